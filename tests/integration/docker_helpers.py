"""Helpers for the tests that need a real Docker engine (images built from this checkout).

The engine and base-image rules are the same as in ``test_docker_real.py``: no engine (or no
base image) skips, unless ``TWI_ASR_REQUIRE_DOCKER=1`` (set by ``.ci/run``) turns it into a
failure. Images are built with :func:`twi_asr.containers.build_image` (docker-py's streaming
low-level build) from the local base ``TWI_ASR_TEST_BASE_IMAGE`` (``scripts/base-image.sh``), so
a registry-less machine builds them offline apart from pip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("TWI_ASR_REQUIRE_DOCKER") == "1"
# The ASR image with tiny.en baked in: the same tag and build args as test_docker_real.py's
# `twi-asr docker build --model tiny.en`, so whichever module builds it, the other reuses its layers.
ASR_IMAGE = "twi-asr:it-tiny-en"


TWI_ASR = str(Path(sys.executable).with_name("twi-asr"))


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``twi-asr ARGS`` as a user would (plain, wide output); never raises on a non-zero exit."""
    environment = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [TWI_ASR, *args], capture_output=True, text=True, timeout=timeout, env=environment, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """``result``'s stdout, after asserting exit 0 (the failure shows both streams)."""
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, shown
    return result.stdout


def skip_or_fail(message: str) -> None:
    """Skip the test, or fail it where Docker is required (CI)."""
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def docker_client() -> Any:
    """docker-py's client of a live engine; skips (or fails in CI) when none answers."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # no engine, no permission, no docker-py
        skip_or_fail(f"no Docker engine answers ({type(exc).__name__}: {exc}): run scripts/docker-engine.sh")
    return client


def base_image(client: Any) -> str:
    """The base to build from: $TWI_ASR_TEST_BASE_IMAGE, else the local debootstrap one, else the public."""
    import docker.errors

    wanted = os.environ.get("TWI_ASR_TEST_BASE_IMAGE")
    for name in [wanted] if wanted else ["twi-asr-base:bookworm", "python:3.11-slim"]:
        try:
            client.images.get(name)
            return str(name)
        except docker.errors.ImageNotFound:
            continue
    skip_or_fail("no base image: run `bash scripts/base-image.sh` (or set TWI_ASR_TEST_BASE_IMAGE)")
    raise AssertionError("unreachable")


def build(client: Any, tag: str, *, dockerfile: str = "Dockerfile", args: dict[str, str]) -> str:
    """Build this checkout (context: the repo root) into ``tag``; returns the image id."""
    from twi_asr import containers

    return containers.build_image(REPO, tag=tag, dockerfile=dockerfile, build_args=args, docker_client=client)


def asr_image(client: Any, base: str) -> str:
    """The ASR image with tiny.en baked in: reused when present (test_docker_real builds it too)."""
    import docker.errors

    try:
        client.images.get(ASR_IMAGE)
    except docker.errors.ImageNotFound:
        build(client, ASR_IMAGE, args={"MODEL": "tiny.en", "BASE_IMAGE": base})
    return ASR_IMAGE


def health(container: Any) -> str:
    """The container's health status ("starting", "healthy", "unhealthy"), or its state if it has none."""
    container.reload()  # docker-py caches attrs: reload before reading the health
    state = container.attrs.get("State") or {}
    return str((state.get("Health") or {}).get("Status") or state.get("Status"))


def wait_healthy(container: Any, timeout: float) -> float:
    """Wait until the image's HEALTHCHECK reports healthy; returns the seconds it took."""
    start = time.monotonic()
    while True:
        status = health(container)
        if status == "healthy":
            return time.monotonic() - start
        if status in ("exited", "dead", "unhealthy") or time.monotonic() - start > timeout:
            logs = container.logs(tail=60).decode("utf-8", "replace")
            raise AssertionError(f"{container.name} is {status} after {timeout:.0f} s; its log:\n{logs}")
        time.sleep(1)


def host_port(container: Any, port: str) -> int:
    """The host port the engine published ``port`` (e.g. "8000/tcp") on."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][port]
    return int(bindings[0]["HostPort"])


def run_once(client: Any, image: str, args: list[str], *, entrypoint: str | None = None) -> tuple[int, str]:
    """``docker run --rm IMAGE ARGS`` with no network: (exit code, stdout + stderr).

    Unlike docker-py's ``containers.run(remove=True)`` this also removes the container's
    anonymous volumes (an image with a ``VOLUME`` gets a new one on every run), as ``--rm`` does.
    """
    container = client.containers.create(image, args, entrypoint=entrypoint, network_disabled=True)
    try:
        container.start()
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        container.remove(force=True, v=True)
