"""The two-container architecture on a real Docker engine: the backend image (8000) in front of the
ASR image (8001) on a user-defined bridge network, the backend reaching the ASR by its alias.

The backend image is built from this checkout (``docker/backend/Dockerfile``, from the local base
``TWI_ASR_TEST_BASE_IMAGE``) and must hold no torch; the ASR image is the one with tiny.en baked
in, shared with ``test_docker_real.py``. The backend runs on its defaults (SQLite and local
storage in its /data volume). A user made with ``docker exec ... twi-asr backend users create``
submits real espeak-ng speech to ``POST /v1/jobs``, and the finished job's words and SRT are
checked. Skipped without an engine unless ``TWI_ASR_REQUIRE_DOCKER=1``. Everything this module
starts (containers, their anonymous volumes, the network) is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .. import docker_helpers as dh
from ..conftest import speak

pytestmark = pytest.mark.slow

PREFIX = f"twi-asr-backend-it-{os.getpid()}"
BACKEND_IMAGE = "twi-asr-backend:it"
SENTENCE = "Please call Stella and ask her to bring these things from the store."
JOB_TIMEOUT_S = 180.0


@dataclass
class Stack:
    network: Any
    asr: Any
    backend: Any
    url: str

    def logs(self) -> str:
        parts = []
        for c in (self.backend, self.asr):
            parts.append(f"--- {c.name}\n{c.logs(tail=40).decode('utf-8', 'replace')}")
        return "\n".join(parts)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = dh.docker_client()
    yield client
    left = [c.name for c in client.containers.list(all=True) if c.name.startswith(PREFIX)]
    for name in left:
        client.containers.get(name).remove(force=True, v=True)
    client.close()
    assert not left, f"containers left behind: {left}"


@pytest.fixture(scope="module")
def base(engine: Any) -> str:
    return dh.base_image(engine)


@pytest.fixture(scope="module")
def backend_image(engine: Any, base: str) -> str:
    dh.build(engine, BACKEND_IMAGE, dockerfile="docker/backend/Dockerfile", args={"BASE_IMAGE": base})
    return BACKEND_IMAGE


@pytest.fixture(scope="module")
def stack(engine: Any, base: str, backend_image: str) -> Iterator[Stack]:
    """Network + ASR (alias ``asr``) + backend (``TWI_ASR_ASR_URL=http://asr:8001``), started."""
    asr_image = dh.asr_image(engine, base)
    network = engine.networks.create(f"{PREFIX}-net", driver="bridge")
    started: list[Any] = []
    try:
        asr = engine.containers.run(
            asr_image,
            name=f"{PREFIX}-asr",
            detach=True,
            environment={"HF_HUB_OFFLINE": "1"},
            network=network.name,
            networking_config={network.name: engine.api.create_endpoint_config(aliases=["asr"])},
        )
        started.append(asr)
        backend = engine.containers.run(
            backend_image,
            name=f"{PREFIX}-backend",
            detach=True,
            environment={"TWI_ASR_ASR_URL": "http://asr:8001", "TWI_ASR_WORKERS": "1"},
            network=network.name,
            ports={"8000/tcp": ("127.0.0.1", None)},  # any free host port
        )
        started.append(backend)
        url = f"http://127.0.0.1:{dh.host_port(backend, '8000/tcp')}"
        yield Stack(network, asr, backend, url)
    finally:
        for container in reversed(started):
            container.remove(force=True, v=True)  # v: the /data anonymous volume goes too
        network.remove()


@pytest.fixture(scope="module")
def healthy(stack: Stack) -> dict[str, float]:
    """Seconds until each container's own HEALTHCHECK said healthy."""
    return {
        "backend": dh.wait_healthy(stack.backend, timeout=120),
        "asr": dh.wait_healthy(stack.asr, timeout=180),
    }


@pytest.fixture(scope="module")
def api_key(stack: Stack, healthy: dict[str, float]) -> str:
    """An admin made the documented way: ``docker exec BACKEND twi-asr backend users create``."""
    result = stack.backend.exec_run(
        ["twi-asr", "backend", "users", "create", "ama", "--admin", "--json"], demux=True
    )
    out, err = (part.decode("utf-8", "replace") if part else "" for part in result.output)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{out}\nstderr:\n{err}"
    body = json.loads(out)
    assert body["name"] == "ama" and body["api_key"].startswith("twk_")
    return str(body["api_key"])


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.fail("espeak-ng and ffmpeg are needed: apt-get install espeak-ng ffmpeg (scripts/setup.sh)")
    return speak(SENTENCE, tmp_path_factory.mktemp("backend-speech") / "stella.wav")


# ------------------------------------------------------------------ tests
def test_compose_file_is_valid() -> None:
    """docker-compose v1 (what Debian ships) accepts docker/compose.yaml and the GPU overlay."""
    tool = shutil.which("docker-compose")
    if tool is None:
        dh.skip_or_fail("docker-compose is missing: apt-get install -y docker-compose")
    for files in (["docker/compose.yaml"], ["docker/compose.yaml", "docker/compose.gpu.yaml"]):
        args = [arg for f in files for arg in ("-f", f)]
        result = subprocess.run(
            [str(tool), *args, "config", "-q"], cwd=dh.REPO, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr


def test_backend_image_is_torch_free_and_non_root(engine: Any, backend_image: str) -> None:
    config = engine.images.get(backend_image).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["twi-asr", "backend"] and config["Cmd"] == ["serve"]
    assert "8000/tcp" in config["ExposedPorts"] and "/data" in config["Volumes"]
    assert "/health" in " ".join(config["Healthcheck"]["Test"])
    assert "TWI_ASR_DATA_DIR=/data" in config["Env"] and "TWI_ASR_BACKEND_HOST=0.0.0.0" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.title"] == "twi-asr-backend"
    probe = (
        "import importlib.util as u, os, twi_asr.backend; "
        "print(os.getuid(), os.getgid(), [m for m in ('torch', 'ctranslate2', 'transformers', "
        "'faster_whisper') if u.find_spec(m)], os.access('/data', os.W_OK))"
    )
    code, out = dh.run_once(engine, backend_image, ["-c", probe], entrypoint="python3")
    assert code == 0 and out.split() == ["10001", "10001", "[]", "True"], out
    # And the plain import fails the way a user would see it.
    code, out = dh.run_once(engine, backend_image, ["-c", "import torch"], entrypoint="python3")
    assert code == 1 and "No module named 'torch'" in out, out


def test_backend_healthcheck_turns_healthy(stack: Stack, healthy: dict[str, float]) -> None:
    assert dh.health(stack.backend) == "healthy" and dh.health(stack.asr) == "healthy"
    assert httpx.get(f"{stack.url}/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/ready", timeout=30)
    assert ready.status_code == 200, (ready.text, stack.logs())
    assert ready.json()["status"] == "ready"
    # the web app ships inside the image: templates and static files are package data
    login = httpx.get(f"{stack.url}/login", timeout=10)
    assert login.status_code == 200 and 'name="csrf_token"' in login.text, login.text[:500]
    script = httpx.get(f"{stack.url}/static/jobs.js", timeout=10)
    assert script.status_code == 200 and "MediaRecorder" in script.text


def test_a_job_goes_through_the_backend_to_the_asr_container(
    stack: Stack, api_key: str, speech: Path
) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=stack.url, headers=auth, timeout=60) as http:
        with speech.open("rb") as f:
            submitted = http.post(
                "/v1/jobs", files={"file": ("stella.wav", f, "audio/wav")}, data={"language": "en"}
            )
        assert submitted.status_code == 202, (submitted.text, stack.logs())
        job = submitted.json()
        assert (
            job["status"] in ("queued", "running", "done")
            and submitted.headers["Location"] == f"/v1/jobs/{job['id']}"
        )
        start = time.monotonic()
        while job["status"] in ("queued", "running"):
            assert time.monotonic() - start < JOB_TIMEOUT_S, f"job still {job['status']}\n{stack.logs()}"
            time.sleep(0.5)
            job = http.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "done", (job, stack.logs())
        assert "stella" in job["text"].lower(), job["text"]
        assert "srt" in job["formats"]
        srt = http.get(f"/v1/jobs/{job['id']}/transcript", params={"format": "srt"})
        assert srt.status_code == 200, srt.text
        assert "-->" in srt.text and "stella" in srt.text.lower()
        assert ".srt" in srt.headers["Content-Disposition"]
        # No key at all: a 401 with the documented error body.
        anonymous = httpx.get(f"{stack.url}/v1/jobs/{job['id']}", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("example", ["flow.sh", "flow.mjs"])
def test_the_examples_transcribe_through_the_backend(
    stack: Stack, api_key: str, speech: Path, tmp_path: Path, example: str
) -> None:
    """examples/backend/: submit, poll, download the SRT, as a user copies them (curl / Node 20)."""
    tool = "bash" if example.endswith(".sh") else "node"
    if shutil.which(tool) is None or shutil.which("curl" if tool == "bash" else "node") is None:
        pytest.skip(f"{tool} (and curl for the shell example) is not installed")
    out = tmp_path / "out.srt"
    env = {**os.environ, "TWI_ASR_BACKEND": stack.url, "TWI_ASR_KEY": api_key}
    script = dh.REPO / "examples" / "backend" / example
    done = subprocess.run(
        [tool, str(script), str(speech), str(out)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "-->" in out.read_text(encoding="utf-8") and "stella" in out.read_text(encoding="utf-8").lower()
    bad = subprocess.run(
        [tool, str(script), str(speech), str(out)],
        env={**env, "TWI_ASR_KEY": "twk_wrong"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "invalid_api_key" in bad.stderr, bad.stderr
