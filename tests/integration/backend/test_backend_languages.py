"""The backend and the inference server from other languages: Node 20 (built-ins only) and curl.

What is real: one ``twi-asr serve --model tiny.en`` (8001), one ``twi-asr backend serve``
(SQLite, local storage) in front of it, espeak-ng speech, and the clients. Python makes the
user's key and nothing else; every request comes from ``node`` (tests/js/*.mjs, and
examples/backend/flow.mjs) or ``curl`` (the README's commands, and examples/backend/flow.sh).
Without ``node`` or ``curl`` the tests that need it skip, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import speak
from ..services import EASY_SENTENCES, Server, start_server, stop_server
from .harness import Backend, backend_env, create_user, start_backend, stop_backend

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
JS = REPO / "tests" / "js"
EXAMPLES = REPO / "examples" / "backend"
# Two sentences tiny.en hears right from espeak-ng, and the words each transcript must contain.
CALL = (EASY_SENTENCES[0], ("stella", "bring", "store"))  # "Please call Stella and ask her ..."
SUN = (EASY_SENTENCES[1], ("sun", "sky", "clear"))  # "The sun is shining and the sky is clear."
RUN_TIMEOUT_S = 300
PACKAGES = {"node": "nodejs"}  # the Debian package of a tool, where the names differ


def need(tool: str, *, min_major: int | None = None) -> str:
    """The tool's path; skip without it (fail when CI is set: there it must be installed)."""
    path = shutil.which(tool)
    why = f"{tool} is not on PATH"
    if path and min_major is not None:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.match(r"v?(\d+)", out.strip())
        if not m or int(m.group(1)) < min_major:
            path, why = None, f"{tool} {out.strip()} is older than {min_major}"
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must have it (apt-get install {PACKAGES.get(tool, tool)})")
        pytest.skip(why)
    return path


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a client; assert exit 0, showing everything it printed when not."""
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, **(env or {})}, cwd=cwd
    )
    shown = f"$ {' '.join(cmd)}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    assert out.returncode == 0, f"exit {out.returncode}\n{shown}"
    print(shown)
    return out.stdout


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[\w']+", text.lower()))


def assert_mentions(text: str, words: tuple[str, ...]) -> None:
    missing = [w for w in words if w not in words_of(text)]
    assert not missing, f"{missing} not in {text!r}"


@pytest.fixture(scope="module")
def asr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("asr") / "asr.log")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, asr: Server) -> Iterator[tuple[Backend, str]]:
    """A SQLite backend in front of ``asr``, and a user's key."""
    folder = tmp_path_factory.mktemp("backend")
    env = backend_env(folder / "data")
    key = create_user(env, "polyglot")
    b = start_backend(folder / "backend.log", env, [asr.url])
    yield b, key
    stop_backend(b)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"call": speak(CALL[0], folder / "call.wav"), "sun": speak(SUN[0], folder / "sun.wav")}


# ------------------------------------------------------------------------------------------ Node
def test_node_backend_flow(backend: tuple[Backend, str], clips: dict[str, Path]) -> None:
    node = need("node", min_major=20)
    b, key = backend
    run(
        [node, str(JS / "backend_flow.mjs"), str(clips["call"]), ",".join(CALL[1]), str(clips["sun"]),
         ",".join(SUN[1])],
        env={"TWI_ASR_KEY": key, "TWI_ASR_BACKEND": b.url},
    )  # fmt: skip


def test_node_asr_direct(asr: Server, clips: dict[str, Path]) -> None:
    node = need("node", min_major=20)
    run(
        [node, str(JS / "asr_direct.mjs"), str(clips["call"]), ",".join(CALL[1])],
        env={"TWI_ASR_URL": asr.url},
    )


def test_example_flow_mjs(backend: tuple[Backend, str], clips: dict[str, Path], tmp_path: Path) -> None:
    script = EXAMPLES / "flow.mjs"
    if not script.is_file():
        pytest.skip("examples/backend/flow.mjs is not there yet")
    node = need("node", min_major=20)
    b, key = backend
    out = tmp_path / "call.srt"
    run([node, str(script), str(clips["sun"]), str(out)], env={"TWI_ASR_KEY": key, "TWI_ASR_BACKEND": b.url})
    assert " --> " in out.read_text(encoding="utf-8")
    assert_mentions(out.read_text(encoding="utf-8"), SUN[1])


# ------------------------------------------------------------------------------------------ curl
def curl(*args: str) -> str:
    """``curl -sS --fail-with-body ARGS``: the body (exit 0 asserted, body shown when not)."""
    return run([need("curl"), "-sS", "--fail-with-body", *args])


def curl_fails(*args: str) -> tuple[int, str]:
    """A curl call expected to fail (HTTP >= 400): its exit code (22) and the body it printed."""
    out = subprocess.run([need("curl"), "-sS", "--fail-with-body", *args], capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_S)  # fmt: skip
    return out.returncode, out.stdout


def test_curl_backend_flow(backend: tuple[Backend, str], clips: dict[str, Path], tmp_path: Path) -> None:
    """The README's commands, one by one: submit, poll, transcript (srt, txt), list, wrong key."""
    need("curl")
    b, key = backend
    bearer = f"Authorization: Bearer {key}"
    shutil.copy(clips["call"], tmp_path / "call.wav")
    job: dict[str, Any] = json.loads(
        run(["curl", "-sS", "--fail-with-body", "-H", bearer, "-F", "file=@call.wav", "-F", "language=en",
             f"{b.url}/v1/jobs"], cwd=tmp_path)
    )  # fmt: skip
    assert job["status"] in ("queued", "running") and job["id"].startswith("job_"), job
    deadline = time.monotonic() + 180
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job not done in 180 s: {job}"
        time.sleep(0.5)
        job = json.loads(curl("-H", bearer, f"{b.url}/v1/jobs/{job['id']}"))
    assert job["status"] == "done", job
    assert_mentions(job["text"], CALL[1])

    run(["curl", "-sS", "--fail-with-body", "-H", bearer, "-o", "call.srt",
         f"{b.url}/v1/jobs/{job['id']}/transcript?format=srt"], cwd=tmp_path)  # fmt: skip
    srt = (tmp_path / "call.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n") and " --> " in srt, srt
    assert_mentions(srt, CALL[1])
    # -OJ: curl names the file from Content-Disposition, as a browser would.
    txt_url = f"{b.url}/v1/jobs/{job['id']}/transcript?format=txt"
    run(["curl", "-sS", "--fail-with-body", "-OJ", "-H", bearer, txt_url], cwd=tmp_path)
    assert_mentions((tmp_path / "call.txt").read_text(encoding="utf-8"), CALL[1])

    listed = json.loads(curl("-H", bearer, f"{b.url}/v1/jobs?status=done"))
    assert job["id"] in [j["id"] for j in listed["data"]], listed

    rc, body = curl_fails("-H", "Authorization: Bearer twk_wrong", f"{b.url}/v1/jobs")
    assert rc == 22, (rc, body)
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_api_key" and error["message"] and "request_id" in error, body

    text = curl("-H", bearer, "-F", f"file=@{clips['sun']}", "-F", "response_format=text",
                f"{b.url}/v1/audio/transcriptions")  # fmt: skip
    assert_mentions(text, SUN[1])


def test_curl_asr_direct(asr: Server, clips: dict[str, Path]) -> None:
    need("curl")
    health = json.loads(curl(f"{asr.url}/health"))
    assert health["status"] == "ok" and health["model"] == "tiny.en" and health["build"]["version"]
    models = json.loads(curl(f"{asr.url}/v1/models"))
    assert models["data"][0]["id"] == "tiny.en", models
    body = json.loads(curl("-F", f"file=@{clips['call']}", f"{asr.url}/v1/audio/transcriptions"))
    assert_mentions(body["text"], CALL[1])
    verbose = json.loads(
        curl(
            "-F",
            f"file=@{clips['call']}",
            "-F",
            "response_format=verbose_json",
            f"{asr.url}/v1/audio/transcriptions",
        )
    )
    assert verbose["segments"] and verbose["duration"] > 1, verbose
    srt = curl(
        "-F", f"file=@{clips['sun']}", "-F", "response_format=srt", f"{asr.url}/v1/audio/transcriptions"
    )
    assert srt.startswith("1\n") and " --> " in srt, srt
    assert_mentions(srt, SUN[1])


def test_example_flow_sh(backend: tuple[Backend, str], clips: dict[str, Path], tmp_path: Path) -> None:
    script = EXAMPLES / "flow.sh"
    if not script.is_file():
        pytest.skip("examples/backend/flow.sh is not there yet")
    need("curl")
    bash = need("bash")
    b, key = backend
    out = tmp_path / "call.srt"
    run([bash, str(script), str(clips["call"]), str(out)], env={"TWI_ASR_KEY": key, "TWI_ASR_BACKEND": b.url})
    assert_mentions(out.read_text(encoding="utf-8"), CALL[1])
