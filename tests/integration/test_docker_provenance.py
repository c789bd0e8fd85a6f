"""Provenance on the real engine: labelled images, `docker verify`, live builds, a baked local checkpoint.

Through the CLI as a user runs it (``twi-asr docker build | verify | run | status``):

- the ct2 image with tiny.en (the tag and build arguments of test_docker_real.py, so the two
  share every layer) carries the OCI labels, the lock's sha256 and the weights hash, with the
  checkout's commit and ``locks/cpu.txt``'s hash; ``docker verify`` finds nothing to say;
- an image derived from it with ``pip uninstall jiwer`` and a blanked label is drift: exit 1,
  naming both;
- a running container's ``/health`` ``build`` is its labels, and ``docker status`` shows them;
- the headline: the transformers copy of tiny.en (made offline from the CTranslate2 weights) is
  baked with ``twi-asr docker build --model HF_DIR`` into the torch-free ct2 image, which serves
  the right words for examples/hello.wav and reports the weights hash its label states.

Needs a Docker engine and the local base image (``scripts/base-image.sh``); skipped without
them unless ``TWI_ASR_REQUIRE_DOCKER=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from twi_asr import __version__
from twi_asr.containers import labels as L
from twi_asr.containers.images import dockerfile_context
from twi_asr.provenance import file_sha256, git_commit
from twi_asr.text import wer

from .docker_helpers import ASR_IMAGE, REPO, base_image, docker_client, ok, run_cli, run_once
from .services import free_port

pytestmark = pytest.mark.slow

PREFIX = f"twi-asr-prov-{os.getpid()}"
HF_IMAGE = "twi-asr:it-hf-tiny-en"
DRIFT_IMAGE = f"twi-asr:it-drift-{os.getpid()}"
HELLO = REPO / "examples" / "hello.wav"
HELLO_TEXT = "Hello from Accra, speech recognition in a container is easy to deploy."
SOURCE = "https://example.org/twi-asr.git"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout, env={"TWI_ASR_SOURCE_URL": SOURCE})


_ok = ok


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = docker_client()
    yield client
    left = [c for c in client.containers.list(all=True) if c.name.startswith(PREFIX)]
    for c in left:
        c.remove(force=True, v=True)
    with contextlib.suppress(Exception):  # never built (an earlier test failed), or already gone
        client.images.remove(DRIFT_IMAGE, force=True)
    client.close()
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture(scope="module")
def base(engine: Any) -> str:
    return base_image(engine)


def _build(tag: str, model: str, base: str) -> dict[str, Any]:
    """`twi-asr docker build` of this checkout; the image's id, labels, commit window and seconds."""
    before = git_commit(REPO)
    t0 = time.monotonic()
    args = ["docker", "build", "-q", "--tag", tag, "--model", model, "--base-image", base]
    out = _ok(_cli(*args, "--context", str(REPO), timeout=1800))
    seconds = time.monotonic() - t0
    image_id = out.strip().splitlines()[-1]
    assert image_id.startswith("sha256:")
    return {"id": image_id, "seconds": seconds, "commits": {before, git_commit(REPO)}}


@pytest.fixture(scope="module")
def ct2_image(engine: Any, base: str) -> dict[str, Any]:
    """The ct2 image with tiny.en baked in, as test_docker_real.py builds it (layers shared)."""
    built = _build(ASR_IMAGE, "tiny.en", base)
    image = engine.images.get(built["id"])  # by id: a parallel run may move the shared tag
    print(f"{ASR_IMAGE}: built in {built['seconds']:.0f} s, {image.attrs['Size'] / 1e6:.0f} MB")
    return {**built, "labels": dict(image.attrs["Config"]["Labels"]), "env": image.attrs["Config"]["Env"]}


# ------------------------------------------------------------------ labels and verify
def test_the_image_is_labelled_with_its_commit_lock_and_weights(ct2_image: dict[str, Any]) -> None:
    from twi_asr.models import resolve_model

    labels = ct2_image["labels"]
    assert labels[L.REVISION] in ct2_image["commits"] and labels[L.REVISION] != "unknown"
    assert labels[L.VERSION] == __version__ and labels[L.SOURCE] == SOURCE
    assert labels[L.CREATED].endswith("Z") and labels[L.TITLE] == "twi-asr (CPU)"
    assert labels[L.LOCK_SHA256] == file_sha256(REPO / "locks" / "cpu.txt")
    assert labels[L.MODEL_SOURCE] == "tiny.en"
    assert labels[L.WEIGHTS_HASH] == resolve_model("tiny.en").weights_hash()  # the same weights, copied
    env = ct2_image["env"]  # the build arguments, with the labels' values
    assert f"TWI_ASR_BUILD_COMMIT={labels[L.REVISION]}" in env
    assert f"TWI_ASR_BUILD_CREATED={labels[L.CREATED]}" in env and f"TWI_ASR_BUILD_SOURCE={SOURCE}" in env


def test_verify_a_fresh_image_agrees_with_its_lock_and_labels(ct2_image: dict[str, Any]) -> None:
    t0 = time.monotonic()
    image = ct2_image["id"]
    out = _ok(_cli("docker", "verify", image, "--lock", str(REPO / "locks" / "cpu.txt")))
    print(f"docker verify: {time.monotonic() - t0:.1f} s")
    assert "DRIFT" not in out and "packages = lock" in out
    report = json.loads(_ok(_cli("docker", "verify", image, "--json")))
    assert report["ok"] is True and report["image_id"] == ct2_image["id"]
    other = _cli("docker", "verify", image, "--lock", str(REPO / "locks" / "backend.txt"))
    assert other.returncode == 1 and "lock = --lock" in other.stderr


def _derive(engine: Any, parent: str, tag: str, lines: list[str]) -> str:
    buf = dockerfile_context("\n".join([f"FROM {parent}", *lines]) + "\n")
    image, _logs = engine.images.build(
        fileobj=buf, custom_context=True, tag=tag, rm=True, network_mode="none"
    )
    return str(image.id)


def test_verify_names_the_drift_of_an_image_changed_after_its_build(
    engine: Any, ct2_image: dict[str, Any]
) -> None:
    _derive(
        engine,
        ct2_image["id"],
        DRIFT_IMAGE,
        ["USER root", "RUN pip uninstall -y jiwer", f'LABEL {L.SOURCE}=""', "USER 10001:10001"],
    )
    result = _cli("docker", "verify", DRIFT_IMAGE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missing: jiwer==" in result.stdout
    assert f"label {L.SOURCE}" in result.stderr and "packages = lock" in result.stderr
    report = json.loads(_cli("docker", "verify", DRIFT_IMAGE, "--json").stdout)
    assert [name for name, _v in report["drift"]["missing"]] == ["jiwer"]
    assert report["drift"]["extra"] == [] and report["drift"]["different"] == []


# ------------------------------------------------------------------ a running container
def _run_server(image: str, name: str) -> str:
    port = free_port()
    return _ok(_cli("docker", "run", "--image", image, "--name", name, "--port", str(port))).strip()


def test_a_running_container_reports_its_labels_and_status_shows_them(ct2_image: dict[str, Any]) -> None:
    name = f"{PREFIX}-run"
    labels = ct2_image["labels"]
    try:
        url = _run_server(ct2_image["id"], name)
        health = httpx.get(f"{url}/health", timeout=10).json()
        build = health["build"]
        assert build["commit"] == labels[L.REVISION] and build["created"] == labels[L.CREATED]
        assert build["source"] == SOURCE and build["version"] == labels[L.VERSION]
        assert build["lock_sha256"] == labels[L.LOCK_SHA256] and build["image_id"] == ct2_image["id"]
        assert health["weights_hash"] == labels[L.WEIGHTS_HASH]
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
        assert models["build"] == build and models["weights_hash"] == labels[L.WEIGHTS_HASH]
        status = json.loads(_ok(_cli("docker", "status", "--json")))
        (mine,) = [c for c in status["containers"] if c["name"] == name]
        assert mine["build"]["mismatches"] == [] and mine["build"]["live"]["commit"] == labels[L.REVISION]
        assert mine["build"]["labels"]["weights_hash"] == labels[L.WEIGHTS_HASH]
        table = _ok(_cli("docker", "status"))
        builds = table[table.index("builds: image labels") :]
        row = next(line for line in builds.splitlines() if name in line)
        assert L.short(labels[L.REVISION]) in row and labels[L.WEIGHTS_HASH] in row and "agrees" in row
    finally:
        _cli("docker", "stop", name)


# ------------------------------------------------------------------ the headline: a local checkpoint
def test_a_local_transformers_checkpoint_is_baked_into_the_torch_free_image(
    engine: Any, base: str, ct2_image: dict[str, Any], tiny_en_hf: Path
) -> None:
    assert (tiny_en_hf / "config.json").is_file() and not (tiny_en_hf / "model.bin").exists()
    built = _build(HF_IMAGE, str(tiny_en_hf), base)
    image = engine.images.get(built["id"])
    labels = image.attrs["Config"]["Labels"]
    print(f"{HF_IMAGE}: built in {built['seconds']:.0f} s, {image.attrs['Size'] / 1e6:.0f} MB")
    assert labels[L.MODEL_SOURCE] == f"local:{tiny_en_hf.name}"
    assert labels[L.WEIGHTS_HASH] not in ("", "none")
    assert "TWI_ASR_MODEL=/opt/model" in image.attrs["Config"]["Env"]
    code, out = run_once(engine, image.id, ["-c", "import torch"], entrypoint="python")
    assert code != 0 and "No module named 'torch'" in out  # torch stayed in no stage of the image
    listing = ["-c", "import os; print(sorted(os.listdir('/opt/model')))"]
    code, out = run_once(engine, image.id, listing, entrypoint="python")
    assert code == 0 and "model.bin" in out and "tokenizer.json" in out, out
    assert "model.safetensors" not in out  # only the converted folder reached the final stage
    _ok(_cli("docker", "verify", image.id))
    name = f"{PREFIX}-hf"
    try:
        url = _run_server(image.id, name)
        with HELLO.open("rb") as fh:
            r = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("hello.wav", fh)}, timeout=120)
        assert r.status_code == 200, r.text
        text = r.json()["text"]
        assert wer(HELLO_TEXT, text) < 0.2, text
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["weights_hash"] == labels[L.WEIGHTS_HASH]
        assert health["build"]["image_id"] == image.id
    finally:
        _cli("docker", "stop", name)
