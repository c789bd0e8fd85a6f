"""Every failure of the Docker engine, mapped onto :mod:`twi_asr.errors`; and the client itself.

Exit code 3 and a one-line message that says what to do: no engine, no
permission on its socket, a missing image, a port already taken, no NVIDIA
runtime for ``--gpu``, no swarm. A docker-py traceback never reaches the user.
``docker`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import DependencyMissingError, EnvironmentProblem, TwiAsrError
from .common import _DEFAULT_SOCKET

if TYPE_CHECKING:
    from docker import DockerClient


class _LogTailError(EnvironmentProblem):
    """An environment problem that carries the last lines of a log (build output, container logs)."""

    tail_title = "its last log lines"

    def __init__(self, summary: str, log_tail: Iterable[str] = (), *, title: str | None = None) -> None:
        self.summary = summary
        self.log_tail = list(log_tail)
        self.tail_title = title or self.tail_title
        body = f"; {self.tail_title}:" + "".join(f"\n  | {line}" for line in self.log_tail)
        super().__init__(summary + (body if self.log_tail else ""))


class ImageBuildError(_LogTailError):
    """``docker build`` failed at a step; ``log_tail`` holds that step's last lines.

    Exit code 3, like every Docker problem: a build has no audio inputs to
    fail partly (exit 1); it fails on the network, the base image, the disk or
    the Dockerfile, all outside what ``twi-asr`` was asked to transcribe.
    """

    code = "build_failed"
    tail_title = "the step's last lines"

    def __init__(self, summary: str, *, step: str | None = None, log_tail: Iterable[str] = ()) -> None:
        super().__init__(summary, log_tail)
        self.step = step


class ContainerFailed(_LogTailError):
    """A server container exited, or was not ready in time; ``log_tail`` holds its last log lines."""

    code = "container_failed"


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or f"unset, so {_DEFAULT_SOCKET}"


def _chain_text(exc: BaseException) -> str:
    """The messages of an exception and of its causes (docker-py wraps requests wraps OSError)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 8:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        explanation = getattr(current, "explanation", None)
        if explanation:
            parts.append(str(explanation))
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def _reason(text: str) -> str:
    """A short reason from a wrapped connection error (the OS message when there is one)."""
    for pattern in (r"\[Errno \d+\] ([^'\"\)]+)", r"\w+Error\(\d+, '([^']+)'\)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    return text.split(" | ")[0][:160]


def map_docker_error(
    exc: BaseException,
    *,
    action: str = "talking to the Docker engine",
    image: str | None = None,
    port: int | None = None,
    gpu: bool = False,
    name: str | None = None,
) -> TwiAsrError | None:
    """Our error for a docker-py / requests exception, or None when it is not one of theirs (a bug).

    ``action`` says what we were doing; ``image``, ``port``, ``gpu`` and
    ``name`` let the message name the thing to fix.
    """
    if isinstance(exc, TwiAsrError):
        return exc
    try:
        import requests
        from docker import errors as derr
    except ImportError:  # pragma: no cover - without docker-py nothing here raises its errors
        return None
    text = _chain_text(exc)
    low = text.lower()
    is_api = isinstance(exc, derr.APIError)
    explanation = str(getattr(exc, "explanation", "") or exc)

    if not is_api and "permission denied" in low:
        return EnvironmentProblem(
            f"permission denied on the Docker socket (DOCKER_HOST={_docker_host()}): add your user to "
            "the docker group (sudo usermod -aG docker $USER, then log in again) or use rootless Docker"
        )
    if isinstance(exc, requests.exceptions.Timeout) or (not is_api and "read timed out" in low):
        return EnvironmentProblem(
            f"the Docker engine did not answer in time while {action}; is it overloaded?"
        )
    if isinstance(exc, requests.exceptions.ConnectionError) or (
        isinstance(exc, derr.DockerException)
        and not is_api
        and any(
            s in low
            for s in (
                "error while fetching server api version",
                "connection refused",
                "connection aborted",
                "no such file or directory",
                "failed to establish a new connection",
            )
        )
    ):
        return EnvironmentProblem(
            f"cannot reach the Docker engine (is dockerd running? DOCKER_HOST={_docker_host()}): "
            f"{_reason(text)}"
        )
    if not is_api:
        if isinstance(exc, derr.DockerException):
            return EnvironmentProblem(f"Docker problem while {action}: {_reason(text)}")
        return None

    status = getattr(exc, "status_code", None)
    if isinstance(exc, derr.ImageNotFound) or "no such image" in low:
        what = image or "the image"
        return EnvironmentProblem(
            f"Docker image {what} not found: build it with `twi-asr docker build"
            + (f" --tag {image}`" if image else "`")
            + " (or pass --image)"
        )
    if "port is already allocated" in low or "address already in use" in low:
        where = f"port {port}" if port else "the port"
        return EnvironmentProblem(
            f"{where} is already in use on this machine: stop what holds it (`twi-asr docker status`) "
            "or pass another --port"
        )
    if gpu and (
        "could not select device driver" in low
        or "nvidia" in low
        or ("unknown or invalid runtime" in low)
        or ("gpu" in low and "capabilit" in low)
    ):
        return EnvironmentProblem(
            "--gpu: this Docker engine has no NVIDIA runtime (install the NVIDIA Container Toolkit and "
            f"restart dockerd), or run without --gpu: {explanation[:160]}"
        )
    if status == 409 and "already in use" in low:
        who = name or "that name"
        return EnvironmentProblem(
            f"a container named {who} already exists: `twi-asr docker stop {who}` or pick another --name"
        )
    if "not a swarm manager" in low or "swarm mode" in low:
        return EnvironmentProblem(
            "this Docker engine is not a swarm manager: pass --init-swarm to make it a one-node swarm"
        )
    if status == 403 or "permission denied" in low:
        return EnvironmentProblem(f"the Docker engine refused {action}: {explanation[:200]}")
    return EnvironmentProblem(f"Docker engine error while {action}: {explanation[:200]}")


@contextlib.contextmanager
def _mapped(action: str, **context: Any) -> Iterator[None]:
    """Translate docker-py / requests exceptions raised inside into our errors."""
    try:
        yield
    except TwiAsrError:
        raise
    except Exception as exc:
        mapped = map_docker_error(exc, action=action, **context)
        if mapped is None:
            raise
        raise mapped from exc


# ----------------------------------------------------------------- client
def client(*, timeout: int = 120) -> DockerClient:
    """A docker-py client from the environment (``DOCKER_HOST``, TLS variables), pinged once.

    Raises :class:`DependencyMissingError` without the ``docker`` extra and
    :class:`EnvironmentProblem` when no engine answers.
    """
    try:
        import docker
    except ImportError:
        raise DependencyMissingError(
            "the Docker SDK is not installed: pip install 'twi-asr[docker]'"
        ) from None
    with _mapped("connecting to the Docker engine"):
        dc = docker.from_env(timeout=timeout)
        dc.ping()
    return dc


def _dc(docker_client: DockerClient | None) -> DockerClient:
    return docker_client if docker_client is not None else client()
