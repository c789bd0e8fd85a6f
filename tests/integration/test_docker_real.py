"""``twi-asr docker ...`` against a real Docker engine: build, run, health, transcribe, scale, batch, stop.

Everything goes through the CLI itself (a real ``twi-asr`` process talking to the
engine with docker-py), except ``docker run IMAGE transcribe``, which the test
starts with docker-py as a user would with ``docker run``. The image is built
from this checkout with the real tiny.en weights baked in, then asked to
transcribe espeak-ng speech, and the words are checked.

Needs a Docker engine and a base image that builds offline from a registry-less
machine (``scripts/base-image.sh``; ``TWI_ASR_TEST_BASE_IMAGE`` names it). Without
an engine the module is skipped, unless ``TWI_ASR_REQUIRE_DOCKER=1`` (set by
``.ci/run``), which turns a missing engine into a failure. Every container and
service gets a name unique to this run and is removed at the end; the module
checks that none is left, and leaves the swarm if it made this engine one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twi_asr.text import wer

from .conftest import Clip
from .docker_helpers import ok, run_cli
from .services import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PREFIX = f"twi-asr-it-{os.getpid()}"
IMAGE = "twi-asr:it-tiny-en"
IMAGE_NO_MODEL = "twi-asr:it-no-model"
MAX_WER = 0.35
REQUIRED = os.environ.get("TWI_ASR_REQUIRE_DOCKER") == "1"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``twi-asr ARGS`` as a user would; never raises on a non-zero exit."""
    return run_cli(*args, timeout=timeout)


_ok = ok


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """docker-py's client of a live engine; skip (or fail in CI) when none answers."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # no engine, no permission, no docker-py
        message = f"no Docker engine answers ({type(exc).__name__}: {exc}): run scripts/docker-engine.sh"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    swarm_before = (client.info().get("Swarm") or {}).get("LocalNodeState")
    volumes_before = {v.name for v in client.volumes.list()}
    yield client
    # Nothing of this run may be left behind: containers (ours and swarm's tasks) and services.
    for service in client.services.list() if swarm_before == "active" or _in_swarm(client) else []:
        if service.name.startswith(PREFIX):
            service.remove()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _ours(client):
        time.sleep(1)
    left = _ours(client)
    for c in left:
        c.remove(force=True)
    if swarm_before != "active" and _in_swarm(client):
        client.swarm.leave(force=True)
    # `twi-asr docker run` mounts the `twi-asr-models` volume by default: remove it only when
    # this run made it (a developer's own volume may hold downloaded models).
    for volume in client.volumes.list():
        if volume.name == "twi-asr-models" and volume.name not in volumes_before:
            with contextlib.suppress(Exception):
                volume.remove(force=True)
    client.close()
    assert not left, f"containers left behind: {[c.name for c in left]}"


def _in_swarm(client: Any) -> bool:
    return (client.info().get("Swarm") or {}).get("LocalNodeState") == "active"


def _ours(client: Any) -> list[Any]:
    """Containers of this run: by our name prefix, or tasks of our services."""
    found = client.containers.list(all=True)
    return [
        c
        for c in found
        if c.name.startswith(PREFIX)
        or str((c.labels or {}).get("com.docker.swarm.service.name", "")).startswith(PREFIX)
    ]


@pytest.fixture(scope="module")
def base_image(engine: Any) -> str:
    """The base image to build from: $TWI_ASR_TEST_BASE_IMAGE, else the local debootstrap one."""
    import docker.errors

    wanted = os.environ.get("TWI_ASR_TEST_BASE_IMAGE")
    for name in [wanted] if wanted else ["twi-asr-base:bookworm", "python:3.11-slim"]:
        try:
            engine.images.get(name)
            return str(name)
        except docker.errors.ImageNotFound:
            continue
    message = "no base image: run `bash scripts/base-image.sh` (or set TWI_ASR_TEST_BASE_IMAGE)"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def image(base_image: str) -> str:
    """The CPU image of this checkout with tiny.en baked in, built through `twi-asr docker build`."""
    out = _ok(
        _cli(
            "docker",
            "build",
            "--tag",
            IMAGE,
            "--model",
            "tiny.en",
            "--base-image",
            base_image,
            "--context",
            str(REPO),
            timeout=1800,
        )  # fmt: skip
    )
    assert out.strip().startswith("sha256:")
    return IMAGE


@pytest.fixture(scope="module")
def clips(speech_clips: list[Clip]) -> list[Clip]:
    """The espeak-ng clips; the first one tiny.en hears right on its own, the rest judged as a corpus."""
    return speech_clips


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """A folder the image's non-root user can read (pytest's tmp_path is private to this uid)."""
    folder = Path(tempfile.mkdtemp(prefix="twi-asr-docker-it-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _words(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def _corpus_wer(clips: list[Clip], out: Path) -> float:
    """Corpus-level WER of the .txt outputs in ``out`` (one file per clip, named after it)."""
    return wer([c.text for c in clips], [_words(out / f"{c.path.stem}.txt") for c in clips])


# ------------------------------------------------------------------ image
def test_image_is_non_root_serves_8001_and_has_the_model_baked_in(engine: Any, image: str) -> None:
    config = engine.images.get(image).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "8001/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["twi-asr"] and config["Cmd"] == ["serve"]
    assert "/ready" in " ".join(config["Healthcheck"]["Test"])
    # The convert stage baked tiny.en (already CTranslate2: copied as is) into /opt/model.
    assert "TWI_ASR_MODEL=/opt/model" in config["Env"]


def test_transcribe_inside_the_image_with_no_network(
    engine: Any, image: str, clips: list[Clip], shared_dir: Path
) -> None:
    """`docker run IMAGE transcribe ...`: the same image is a batch tool, offline (weights baked in)."""
    data = shared_dir / "inside"
    data.mkdir()
    shutil.copy(clips[0].path, data / "clip.wav")
    logs = engine.containers.run(
        image,
        ["transcribe", "/data/clip.wav", "-o", "/data/out", "-f", "txt,srt"],
        name=f"{PREFIX}-oneshot",
        volumes={str(data): {"bind": "/data", "mode": "rw"}},
        user=f"{os.getuid()}:{os.getgid()}",
        network_disabled=True,
        remove=True,
        stdout=True,
        stderr=True,
    )
    assert logs is not None
    assert wer(clips[0].text, _words(data / "out" / "clip.txt")) <= MAX_WER
    assert "-->" in (data / "out" / "clip.srt").read_text(encoding="utf-8")


# ------------------------------------------------------------------ run / health / logs / stop
def test_run_waits_until_ready_then_serves_the_right_words(
    engine: Any, image: str, clips: list[Clip], tmp_path: Path
) -> None:
    name = f"{PREFIX}-run"
    port = free_port()
    try:
        url = _ok(_cli("docker", "run", "--image", image, "--name", name, "--port", str(port))).strip()
        assert url == f"http://127.0.0.1:{port}"
        health = json.loads(_ok(_cli("docker", "health", name, "--json")))
        assert health["ready"] is True and health["status"] == "running"
        out = tmp_path / "out"
        _ok(_cli("transcribe", *(str(c.path) for c in clips[:3]), "--server", url, "-o", str(out)))
        assert _corpus_wer(clips[:3], out) <= MAX_WER
        status = json.loads(_ok(_cli("docker", "status", "--json")))
        mine = [c for c in status["containers"] if c["name"] == name]
        assert mine and mine[0]["status"] == "running" and mine[0]["url"] == url
        logs = _ok(_cli("docker", "logs", name))
        assert "/v1/audio/transcriptions" in logs  # the server's access log, as the container wrote it
        # The same name again while it runs: a one-line message, exit 3, the first one untouched.
        again = _cli("docker", "run", "--image", image, "--name", name, "--port", "0")
        assert again.returncode == 3 and "already running" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        stopped = _cli("docker", "stop", name)
    assert stopped.returncode == 0 and f"container {name}" in stopped.stderr
    assert not [c for c in engine.containers.list(all=True) if c.name == name]


def test_a_mounted_model_folder_instead_of_baked_weights(
    engine: Any, base_image: str, image: str, shared_dir: Path, clips: list[Clip], tmp_path: Path
) -> None:
    """An image with no model, serving the weights from a read-only bind mount (--volume)."""
    from twi_asr.models import resolve_model

    _ok(
        _cli(
            "docker",
            "build",
            "--tag",
            IMAGE_NO_MODEL,
            "--base-image",
            base_image,
            "--context",
            str(REPO),
            "--quiet",
            timeout=1800,
        )  # fmt: skip
    )
    assert "TWI_ASR_MODEL=twi" in engine.images.get(IMAGE_NO_MODEL).attrs["Config"]["Env"]
    weights = shared_dir / "tiny-en"
    shutil.copytree(resolve_model("tiny.en").path, weights)
    for path in [weights, *weights.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    name = f"{PREFIX}-mounted"
    try:
        url = _ok(
            _cli(
                "docker",
                "run",
                "--image",
                IMAGE_NO_MODEL,
                "--name",
                name,
                "--port",
                "0",
                "--model",
                "/models/tiny-en",
                "--volume",
                f"{weights}:/models/tiny-en:ro",
            )  # fmt: skip
        ).strip()
        out = tmp_path / "out"
        _ok(_cli("transcribe", str(clips[0].path), "--server", url, "-o", str(out)))
        assert wer(clips[0].text, _words(out / f"{clips[0].path.stem}.txt")) <= MAX_WER
    finally:
        _cli("docker", "stop", name)


def test_errors_are_one_line_with_exit_3(engine: Any, image: str) -> None:
    missing = _cli("docker", "run", "--image", "twi-asr:no-such-tag", "--name", f"{PREFIX}-missing")
    assert missing.returncode == 3
    assert "twi-asr:no-such-tag" in missing.stderr and "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _cli("docker", "run", "--image", image, "--name", f"{PREFIX}-busy", "--port", str(port))
    assert busy.returncode == 3 and str(port) in busy.stderr and "Traceback" not in busy.stderr
    assert not [c for c in engine.containers.list(all=True) if c.name == f"{PREFIX}-busy"]
    nothing = _cli("docker", "health", f"{PREFIX}-nobody")
    assert nothing.returncode == 3 and "no twi-asr container or service" in nothing.stderr
    if "nvidia" not in (engine.info().get("Runtimes") or {}):  # the engine has no GPU support
        gpu = _cli("docker", "run", "--gpu", "--image", image, "--name", f"{PREFIX}-gpu", "--port", "0")
        assert gpu.returncode == 3 and "NVIDIA" in gpu.stderr and "Traceback" not in gpu.stderr
        assert not [c for c in engine.containers.list(all=True) if c.name == f"{PREFIX}-gpu"]


# ------------------------------------------------------------------ scale
def test_scale_to_two_replicas_and_both_serve(
    engine: Any, image: str, clips: list[Clip], tmp_path: Path
) -> None:
    name = f"{PREFIX}-svc"
    try:
        body = json.loads(
            _ok(
                _cli(
                    "docker",
                    "scale",
                    "2",
                    "--init-swarm",
                    "--image",
                    image,
                    "--name",
                    name,
                    "--timeout",
                    "180",
                    "--json",
                )  # fmt: skip
            )
        )
        assert body["replicas"] == 2 and body["running"] == 2
        urls = body["urls"]
        # Behind the mesh one URL spreads over both; in host mode (no IPVS) each replica has its own.
        assert len(urls) == (1 if body["publish_mode"] == "ingress" else 2)
        answered: set[str] = set()
        for i, url in enumerate(urls):
            out = tmp_path / f"out{i}"
            _ok(_cli("transcribe", *(str(c.path) for c in clips), "--server", url, "-o", str(out)))
            assert _corpus_wer(clips, out) <= MAX_WER, url
            answered.add(url)
        assert answered == set(urls)
        status = json.loads(_ok(_cli("docker", "status", "--json")))
        mine = [s for s in status["services"] if s["name"] == name]
        assert mine and mine[0]["running"] == 2 and mine[0]["urls"] == urls
        health = json.loads(_ok(_cli("docker", "health", name, "--json")))
        assert health["ready"] is True
        # Scale down to one: the service shrinks and still serves.
        body = json.loads(_ok(_cli("docker", "scale", "1", "--name", name, "--timeout", "120", "--json")))
        assert body["replicas"] == 1 and body["running"] == 1
    finally:
        stopped = _cli("docker", "stop", name)
    assert stopped.returncode == 0 and f"service {name}" in stopped.stderr


# ------------------------------------------------------------------ batch
def test_docker_batch_starts_uses_and_stops_a_container(
    engine: Any, image: str, clips: list[Clip], tmp_path: Path
) -> None:
    name = f"{PREFIX}-batch"
    src = tmp_path / "in"
    src.mkdir()
    for clip in clips[:4]:
        shutil.copy(clip.path, src / clip.path.name)
    out = tmp_path / "out"
    result = _cli(
        "docker", "batch", str(src), "-o", str(out), "--image", image, "--name", name, "-f", "txt,json"
    )  # fmt: skip
    _ok(result)
    assert _corpus_wer(clips[:4], out) <= MAX_WER
    for clip in clips[:4]:
        assert json.loads((out / f"{clip.path.stem}.json").read_text(encoding="utf-8"))["text"]
    assert f"stopped container {name}" in result.stderr
    assert not [c for c in engine.containers.list(all=True) if c.name == name]
    # Resumable like `twi-asr batch`: a rerun finds everything done and starts no container at all.
    again = _cli("docker", "batch", str(src), "-o", str(out), "--image", image, "--name", name)
    _ok(again)
    assert "started container" not in again.stderr
