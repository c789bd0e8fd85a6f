"""The Docker engine, through docker-py (never the ``docker`` binary): build, run, wait, stop, scale.

Typed functions over docker-py's untyped kwargs, used by ``twi-asr docker ...``.
Every container and service made here carries the label ``twi-asr.managed=true``
so ``status``, ``stop --all`` and ``logs`` find ours and never touch anyone else's.

Every failure of the engine maps onto :mod:`twi_asr.errors` (exit code 3, a
one-line message that says what to do): no engine, no permission on its
socket, a missing image, a port already taken, no NVIDIA runtime for ``--gpu``,
no swarm. A docker-py traceback never reaches the user.

``docker`` (the ``docker`` extra) and ``httpx`` are imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DependencyMissingError, EnvironmentProblem, TwiAsrError, UsageError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.services import Service


__all__ = [
    "CONTAINER_PORT",
    "CPU_IMAGE",
    "DEFAULT_NAME",
    "GPU_IMAGE",
    "MANAGED_LABEL",
    "PUBLISH_MODES",
    "ContainerFailed",
    "ContainerInfo",
    "ImageBuildError",
    "ServiceInfo",
    "build_image",
    "client",
    "container_url",
    "health",
    "list_managed",
    "list_services",
    "logs",
    "map_docker_error",
    "remove",
    "routing_mesh_available",
    "run_server",
    "scale",
    "serving_container",
    "stop",
    "wait_ready",
    "wait_replicas",
    "wait_service_ready",
]

CONTAINER_PORT = 8001
"""The port ``twi-asr serve`` listens on inside the image."""
CPU_IMAGE = "twi-asr:cpu"
GPU_IMAGE = "twi-asr:cuda"
DEFAULT_NAME = "twi-asr"
MANAGED_LABEL = "twi-asr.managed"
SERVICE_LABEL = "twi-asr.service"
"""On a swarm service's task containers (not ``managed``: swarm owns them, ``stop --all`` must not)."""
_LABELS = {MANAGED_LABEL: "true"}
_MANAGED_FILTER = {"label": f"{MANAGED_LABEL}=true"}
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_BUILD_TAIL = 20
_LOG_TAIL = 30


# ----------------------------------------------------------------- errors
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


# ----------------------------------------------------------------- build
_STEP = re.compile(r"^Step \d+/\d+ : ")


def build_image(
    context: Path,
    *,
    tag: str,
    dockerfile: str = "Dockerfile",
    build_args: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    pull: bool = False,
    no_cache: bool = False,
    docker_client: DockerClient | None = None,
) -> str:
    """Build ``context`` into ``tag`` and return the image id, streaming the build output.

    Each output line goes to ``on_line`` as it arrives (docker-py's low-level
    ``api.build(decode=True)``; the high-level one waits for the end). On an
    error chunk raises :class:`ImageBuildError` naming the failing step, with
    its last ~20 lines. The engine's API build is the legacy builder: the
    Dockerfile must not need BuildKit-only syntax (``RUN --mount``, heredocs).
    """
    context = Path(context)
    if not context.is_dir():
        raise UsageError(f"--context {context}: no such folder")
    if not (context / dockerfile).is_file():
        raise UsageError(f"{context / dockerfile}: no such Dockerfile (pass --context or --file)")
    dc = _dc(docker_client)
    emit = on_line or (lambda _line: None)
    step: str | None = None
    tail: deque[str] = deque(maxlen=_BUILD_TAIL)
    seen_ids: list[str] = []
    image_id: str | None = None
    pending = ""

    def line_out(line: str) -> None:
        nonlocal step
        line = line.rstrip("\r")
        if not line.strip():
            return
        if _STEP.match(line):
            step = line
            tail.clear()
        if not line.startswith("Removing intermediate container"):
            tail.append(line)
        found = re.match(r"^Successfully built ([0-9a-f]+)", line)
        if found:
            seen_ids.append(found.group(1))
        emit(line)

    with _mapped(f"building {tag}", image=tag):
        stream = dc.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=dict(build_args or {}),
            decode=True,
            rm=True,
            forcerm=True,
            pull=pull,
            nocache=no_cache,
        )
        for chunk in stream:
            if "stream" in chunk:
                pending += str(chunk["stream"])
                while "\n" in pending:
                    line, pending = pending.split("\n", 1)
                    line_out(line)
            elif "error" in chunk or "errorDetail" in chunk:
                if pending:
                    line_out(pending)
                    pending = ""
                detail = chunk.get("errorDetail") or {}
                message = str(chunk.get("error") or detail.get("message") or "unknown error").strip()
                raise ImageBuildError(_build_failure(tag, step, message), step=step, log_tail=list(tail))
            elif "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                image_id = str(chunk["aux"]["ID"])
            elif "status" in chunk and "progress" not in chunk:
                status = str(chunk["status"])
                line_out(f"{chunk['id']}: {status}" if chunk.get("id") else status)
        if pending:
            line_out(pending)
        if image_id is None and seen_ids:
            image_id = seen_ids[-1]
        if image_id is None:
            image_id = str(dc.images.get(tag).id)
    return image_id


def _build_failure(tag: str, step: str | None, message: str) -> str:
    where = f"at {step[:120]}" if step else "before the first step"
    hint = ""
    low = message.lower()
    pull_failures = (
        "pull access denied",
        "registry-1.docker.io",
        "manifest unknown",
        "repository does not exist",
        "no such host",
    )
    if any(s in low for s in pull_failures):
        hint = " (the base image cannot be pulled: pass --base-image with an image this engine has)"
    return f"docker build of {tag} failed {where}: {message.splitlines()[0][:300]}{hint}"


# ----------------------------------------------------------------- run
@dataclass(frozen=True)
class ContainerInfo:
    """One twi-asr server container, as ``status`` shows it."""

    name: str
    id: str
    image: str
    status: str
    """created, running, exited, ..."""
    health: str
    """healthy, unhealthy, starting, or none (no HEALTHCHECK)."""
    ports: dict[str, str] = field(default_factory=dict)
    """``8001/tcp`` -> ``127.0.0.1:8001``."""
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _health_of(container: Container) -> str:
    state = (container.attrs or {}).get("State") or {}
    return str((state.get("Health") or {}).get("Status") or "none")


def _bindings(container: Container) -> dict[str, list[dict[str, str]]]:
    attrs = container.attrs or {}
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    if not any(ports.values()):  # not running: what was asked for
        ports = (attrs.get("HostConfig") or {}).get("PortBindings") or ports
    return {k: list(v or []) for k, v in ports.items()}


def container_url(container: Container) -> str | None:
    """``http://127.0.0.1:PORT`` for the host port mapped to 8001/tcp, or None while none is."""
    for binding in _bindings(container).get(f"{CONTAINER_PORT}/tcp", []):
        host_port = str(binding.get("HostPort") or "")
        if host_port and host_port != "0":
            host_ip = str(binding.get("HostIp") or "")
            host = "127.0.0.1" if host_ip in ("", "0.0.0.0", "::") else host_ip
            if ":" in host:
                host = f"[{host}]"
            return f"http://{host}:{host_port}"
    return None


def _info(container: Container) -> ContainerInfo:
    attrs = container.attrs or {}
    image = str((attrs.get("Config") or {}).get("Image") or "")
    ports = {
        k: ", ".join(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort') or 'auto'}" for b in v)
        for k, v in _bindings(container).items()
        if v
    }
    return ContainerInfo(
        name=str(container.name),
        id=str(container.id)[:12],
        image=image,
        status=str(container.status),
        health=_health_of(container),
        ports=ports,
        url=container_url(container),
    )


def _is_managed(container: Any) -> bool:
    labels = (((container.attrs or {}).get("Config") or {}).get("Labels")) or {}
    return labels.get(MANAGED_LABEL) == "true"


def _find_container(dc: DockerClient, name: str) -> Container | None:
    """Our container named ``name`` (or with that id), None when there is none."""
    from docker.errors import NotFound

    with _mapped(f"looking up container {name}"):
        try:
            container = dc.containers.get(name)
        except NotFound:
            return None
    if not _is_managed(container):
        raise EnvironmentProblem(
            f"container {name} was not started by twi-asr (no {MANAGED_LABEL} label); leaving it alone"
        )
    return container


def server_env(env: dict[str, str] | None, *, model: str | None, api_key: str | None) -> dict[str, str]:
    """The server's environment in a container or service: the user's ``--env`` plus our settings."""
    environment = dict(env or {})
    environment["TWI_ASR_PORT"] = str(CONTAINER_PORT)
    if model:
        environment["TWI_ASR_MODEL"] = model
    if api_key:
        environment["TWI_ASR_API_KEY"] = api_key
    return environment


def run_server(
    image: str,
    *,
    name: str = DEFAULT_NAME,
    port: int | None = CONTAINER_PORT,
    model: str | None = None,
    env: dict[str, str] | None = None,
    api_key: str | None = None,
    gpu: bool = False,
    volumes: dict[str, str] | None = None,
    bind: str = "127.0.0.1",
    docker_client: DockerClient | None = None,
) -> Container:
    """Start a detached ``twi-asr serve`` container from ``image`` and return it (not yet ready).

    The server's port 8001 is published on ``bind:port`` (127.0.0.1 unless
    asked; ``port`` None or 0 = any free port, see :func:`container_url`).
    ``model`` and ``api_key`` become ``TWI_ASR_MODEL`` / ``TWI_ASR_API_KEY``;
    ``gpu`` asks for every NVIDIA GPU; ``volumes`` maps host paths to
    container paths (append ``:ro`` for read-only). No restart policy. A
    stopped container of ours with the same name is replaced; a running one is
    an error.
    """
    from docker.types import DeviceRequest

    dc = _dc(docker_client)
    existing = _find_container(dc, name)
    if existing is not None:
        if existing.status in ("running", "restarting", "paused"):
            where = container_url(existing) or "no published port"
            raise EnvironmentProblem(
                f"container {name} is already running ({where}): use it, or `twi-asr docker stop {name}`"
            )
        with _mapped(f"removing the stopped container {name}"):
            existing.remove(force=True)
    environment = server_env(env, model=model, api_key=api_key)
    mounts: dict[str, dict[str, str]] = {}
    for host, target in (volumes or {}).items():
        path, _, mode = target.partition(":")
        mounts[str(Path(host).expanduser().resolve())] = {"bind": path, "mode": mode or "rw"}
    kwargs: dict[str, Any] = {
        "name": name,
        "detach": True,
        "labels": dict(_LABELS),
        "environment": environment,
        "ports": {f"{CONTAINER_PORT}/tcp": (bind, port or None)},
        "restart_policy": {"Name": "no"},
    }
    if gpu:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if mounts:
        kwargs["volumes"] = mounts
    with _mapped(f"creating container {name}", image=image, name=name, port=port, gpu=gpu):
        container = dc.containers.create(image, **kwargs)
    try:
        with _mapped(f"starting container {name}", image=image, name=name, port=port, gpu=gpu):
            container.start()
            container.reload()
    except BaseException:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        raise
    return container


def _log_lines(container: Container, tail: int = _LOG_TAIL) -> list[str]:
    """The container's last ``tail`` log lines (stdout and stderr); [] when they cannot be read."""
    try:
        raw = container.logs(stdout=True, stderr=True, tail=tail)
    except Exception:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.splitlines()[-tail:]


def _http_get(url: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]] | None:
    """GET ``url``: (status, JSON body or {}), or None when nothing answers."""
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def wait_ready(
    container: Container,
    url: str | None = None,
    timeout_s: float = 120.0,
    *,
    interval_s: float = 0.25,
    on_wait: Callable[[str], None] | None = None,
) -> str:
    """Poll ``url``/ready (and the container's state) until the server is ready; return the URL.

    ``url`` None: the container's published port. Raises
    :class:`ContainerFailed` with the last 30 log lines when the container
    exits, when the server reports a failed model load, or after ``timeout_s``.
    """
    from docker.errors import NotFound

    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            with _mapped(f"inspecting container {container.name}"):
                container.reload()
        except EnvironmentProblem as exc:
            if isinstance(exc.__cause__, NotFound):
                raise ContainerFailed(f"container {container.name} disappeared before it was ready") from None
            raise
        status = str(container.status)
        if status in ("exited", "dead"):
            code = ((container.attrs or {}).get("State") or {}).get("ExitCode")
            raise ContainerFailed(
                f"container {container.name} exited (code {code}) before it was ready",
                _log_lines(container),
            )
        url = url or container_url(container)
        if status == "running" and url:
            answer = _http_get(url.rstrip("/") + "/ready")
            if answer is not None:
                code, body = answer
                if code == 200:
                    return url
                last = f"{body.get('status', code)}" + (f": {body['detail']}" if body.get("detail") else "")
                if body.get("status") == "error":
                    raise ContainerFailed(
                        f"the server in {container.name} failed to start ({last})",
                        _log_lines(container),
                    )
        if on_wait is not None:
            on_wait(f"{container.name}: {status}, health {_health_of(container)}, /ready {last}")
        if time.monotonic() >= deadline:
            raise ContainerFailed(
                f"container {container.name} not ready at {url or '(no port yet)'} after {timeout_s:g} s "
                f"(/ready: {last}); it is still there: `twi-asr docker logs {container.name}`, "
                f"`twi-asr docker stop {container.name}`",
                _log_lines(container),
            )
        time.sleep(interval_s)


# ----------------------------------------------------------------- inspect
def list_managed(*, docker_client: DockerClient | None = None) -> list[ContainerInfo]:
    """Every container labelled ``twi-asr.managed=true``, running or not, by name."""
    dc = _dc(docker_client)
    with _mapped("listing containers"):
        found = dc.containers.list(all=True, filters=dict(_MANAGED_FILTER))
    return sorted((_info(c) for c in found if _is_managed(c)), key=lambda i: i.name)


@dataclass(frozen=True)
class ServiceInfo:
    """One twi-asr swarm service: its replicas and where they are published.

    ``publish_mode`` ``ingress``: the routing mesh publishes one ``port`` for
    all replicas (``url``). ``host``: each running replica publishes its own
    port on the node (``replica_urls``), for engines whose kernel has no IPVS.
    """

    name: str
    id: str
    image: str
    replicas: int
    """Desired."""
    running: int
    """Tasks in state ``running`` (past the image's HEALTHCHECK, when it has one)."""
    port: int | None
    update_state: str | None = None
    """updating, completed, paused, rollback_completed... (None before any update)."""
    url: str | None = None
    errors: tuple[str, ...] = ()
    """Messages of the latest failed or rejected tasks."""
    publish_mode: str = "ingress"
    replica_urls: tuple[str, ...] = ()
    """One URL per running replica (host mode); empty behind the mesh."""

    @property
    def urls(self) -> tuple[str, ...]:
        """Where clients reach the service: the mesh URL, or every replica's."""
        return (self.url,) if self.url else self.replica_urls

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "urls": list(self.urls)}


def _service_info(service: Service) -> ServiceInfo:
    with _mapped(f"inspecting service {service.name}"):
        service.reload()
        tasks = service.tasks()
    spec = service.attrs.get("Spec") or {}
    image = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image") or "")
    replicas = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)
    spec_ports = (spec.get("EndpointSpec") or {}).get("Ports") or []
    mode = "host" if any(p.get("PublishMode") == "host" for p in spec_ports) else "ingress"
    port: int | None = None
    if mode == "ingress":
        for p in (service.attrs.get("Endpoint") or {}).get("Ports") or spec_ports:
            if int(p.get("TargetPort") or 0) == CONTAINER_PORT and p.get("PublishedPort"):
                port = int(p["PublishedPort"])
    replica_ports: list[int] = []
    for t in tasks:
        if t.get("DesiredState") != "running" or (t.get("Status") or {}).get("State") != "running":
            continue
        for p in ((t.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
            if int(p.get("TargetPort") or 0) == CONTAINER_PORT and p.get("PublishedPort"):
                replica_ports.append(int(p["PublishedPort"]))
    running = sum(
        1
        for t in tasks
        if (t.get("DesiredState") == "running" and (t.get("Status") or {}).get("State") == "running")
    )
    failed = [
        str((t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("Message") or "")
        for t in sorted(tasks, key=lambda t: str(t.get("UpdatedAt") or ""), reverse=True)
        if (t.get("Status") or {}).get("State") in ("failed", "rejected")
    ]
    return ServiceInfo(
        name=str(spec.get("Name") or service.name),
        id=str(service.id)[:12],
        image=image.split("@sha256:")[0],
        replicas=replicas,
        running=running,
        port=port,
        update_state=(service.attrs.get("UpdateStatus") or {}).get("State"),
        url=f"http://127.0.0.1:{port}" if port else None,
        errors=tuple(dict.fromkeys(m for m in failed if m))[:3],
        publish_mode=mode,
        replica_urls=tuple(f"http://127.0.0.1:{p}" for p in sorted(dict.fromkeys(replica_ports))),
    )


def _swarm_state(dc: DockerClient) -> tuple[str, bool]:
    """(LocalNodeState, ControlAvailable) of this engine: ``inactive``/``active``, manager or not."""
    with _mapped("reading the swarm state"):
        swarm = (dc.info() or {}).get("Swarm") or {}
    return str(swarm.get("LocalNodeState") or "inactive"), bool(swarm.get("ControlAvailable"))


def _our_services(dc: DockerClient, name: str | None = None) -> list[Service]:
    filters: dict[str, Any] = dict(_MANAGED_FILTER)
    if name:
        filters["name"] = name
    with _mapped("listing services"):
        found = dc.services.list(filters=filters)
    return [s for s in found if name is None or s.name == name]


def list_services(*, docker_client: DockerClient | None = None) -> list[ServiceInfo]:
    """Our swarm services (label ``twi-asr.managed=true``); [] when the engine is not a swarm manager."""
    dc = _dc(docker_client)
    state, manager = _swarm_state(dc)
    if state != "active" or not manager:
        return []
    return sorted((_service_info(s) for s in _our_services(dc)), key=lambda i: i.name)


def logs(
    name: str, *, follow: bool = False, tail: int = 100, docker_client: DockerClient | None = None
) -> Iterator[str]:
    """The log lines of our container (or swarm service) ``name``; ``follow`` keeps reading."""
    dc = _dc(docker_client)
    container = _find_container(dc, name)
    source: Any
    if container is not None:
        with _mapped(f"reading the logs of {name}"):
            source = container.logs(stream=True, follow=follow, tail=tail, stdout=True, stderr=True)
    else:
        services = _our_services(dc, name) if _swarm_state(dc) == ("active", True) else []
        if not services:
            raise EnvironmentProblem(
                f"no twi-asr container or service named {name} (see `twi-asr docker status`)"
            )
        with _mapped(f"reading the logs of service {name}"):
            source = services[0].logs(stdout=True, stderr=True, follow=follow, tail=tail)
    return _lines(source, name)


def _lines(chunks: Iterable[bytes | str], name: str) -> Iterator[str]:
    pending = ""
    with _mapped(f"reading the logs of {name}"):
        for chunk in chunks:
            pending += chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)
            while "\n" in pending:
                line, pending = pending.split("\n", 1)
                yield line.rstrip("\r")
    if pending:
        yield pending


def _stop_container(container: Container, *, keep: bool, timeout: int) -> None:
    with _mapped(f"stopping container {container.name}"):
        if container.status in ("running", "restarting", "paused"):
            container.stop(timeout=timeout)
        if not keep:
            container.remove(force=True)


def stop(
    name: str | None = None,
    *,
    all_managed: bool = False,
    keep: bool = False,
    timeout: int = 10,
    docker_client: DockerClient | None = None,
) -> list[str]:
    """Stop (and, unless ``keep``, remove) our container or service ``name``, or all of ours.

    Only containers and services labelled ``twi-asr.managed=true`` are
    touched. Returns what was stopped, as ``container NAME`` / ``service NAME``;
    raises when a named one does not exist.
    """
    if (name is None) == (not all_managed):
        raise UsageError("name one container or service, or pass --all")
    dc = _dc(docker_client)
    done: list[str] = []
    if all_managed:
        with _mapped("listing containers"):
            containers = [
                c for c in dc.containers.list(all=True, filters=dict(_MANAGED_FILTER)) if _is_managed(c)
            ]
    else:
        found = _find_container(dc, str(name))
        containers = [found] if found is not None else []
    for c in containers:
        _stop_container(c, keep=keep, timeout=timeout)
        done.append(f"container {c.name}")
    if _swarm_state(dc) == ("active", True):
        for s in _our_services(dc, None if all_managed else name):
            with _mapped(f"removing service {s.name}"):
                s.remove()
            done.append(f"service {s.name}")
    if name is not None and not done:
        raise EnvironmentProblem(
            f"no twi-asr container or service named {name} (see `twi-asr docker status`)"
        )
    return done


def remove(name: str, *, docker_client: DockerClient | None = None) -> None:
    """Remove our container ``name`` at once, running or not (no graceful stop)."""
    dc = _dc(docker_client)
    container = _find_container(dc, name)
    if container is None:
        raise EnvironmentProblem(f"no twi-asr container named {name} (see `twi-asr docker status`)")
    with _mapped(f"removing container {name}"):
        container.remove(force=True)


def health(
    target: str, *, api_key: str | None = None, docker_client: DockerClient | None = None
) -> dict[str, Any]:
    """Health of a server URL (GET /health and /ready) or of our container/service by name.

    Returns a JSON-ready dict with at least ``ready`` (bool), ``alive``
    (bool) and ``url``; a container adds ``status`` and ``health`` (its
    HEALTHCHECK), a service ``replicas`` and ``running``.
    """
    del api_key  # /health and /ready need no key
    if target.startswith(("http://", "https://")):
        return _probe(target)
    dc = _dc(docker_client)
    container = _find_container(dc, target)
    if container is not None:
        with _mapped(f"inspecting container {target}"):
            container.reload()
        url = container_url(container)
        out: dict[str, Any] = {
            "name": container.name,
            "status": container.status,
            "health": _health_of(container),
        }
        if container.status == "running" and url:
            out.update(_probe(url))
        else:
            out.update({"url": url, "alive": False, "ready": False, "ready_status": None})
        return out
    services = _our_services(dc, target) if _swarm_state(dc) == ("active", True) else []
    if not services:
        raise EnvironmentProblem(
            f"no twi-asr container or service named {target} (see `twi-asr docker status`), "
            "and not a URL (http://...)"
        )
    info = _service_info(services[0])
    out = {
        "name": info.name,
        "replicas": info.replicas,
        "running": info.running,
        "image": info.image,
        "publish_mode": info.publish_mode,
    }
    probes = [_probe(u) for u in info.urls]
    if info.url:
        out.update(probes[0])
    else:
        out["url"] = None
        out["replica_urls"] = [p["url"] for p in probes]
        out["replicas_ready"] = sum(1 for p in probes if p["ready"])
        out["alive"] = any(p["alive"] for p in probes)
        out["ready"] = bool(probes) and all(p["ready"] for p in probes)
    out["ready"] = bool(out.get("ready")) and info.running >= info.replicas > 0
    return out


def _probe(url: str) -> dict[str, Any]:
    base = url.rstrip("/")
    alive = _http_get(base + "/health")
    ready = _http_get(base + "/ready") if alive is not None else None
    return {
        "url": base,
        "alive": alive is not None and alive[0] == 200,
        "ready": ready is not None and ready[0] == 200,
        "ready_status": (ready[1].get("status") or ready[0]) if ready is not None else None,
        "detail": ready[1].get("detail") if ready is not None else "nothing answers",
    }


# ----------------------------------------------------------------- swarm
PUBLISH_MODES = ("auto", "ingress", "host")
"""How ``scale`` publishes the service: auto picks ingress where the kernel has IPVS, else host."""


def _ipvs_present() -> bool:
    """Does this machine's kernel have IPVS (loaded, or as a module dockerd can load)?"""
    release = os.uname().release
    modules = Path("/lib/modules", release)
    return (
        Path("/proc/net/ip_vs").exists()
        or Path("/sys/module/ip_vs").exists()
        or (modules.is_dir() and any(modules.rglob("ip_vs.ko*")))
    )


def routing_mesh_available() -> bool:
    """Best guess whether the swarm routing mesh works on the engine we talk to.

    The mesh (ingress publishing, service virtual IPs) needs the kernel's IPVS;
    without it tasks run but the published port never answers (dockerd logs
    "Could not get ipvs family information"). A local engine (unix socket) is
    checked on this machine's kernel; a remote one is assumed to have it.
    """
    host = os.environ.get("DOCKER_HOST") or _DEFAULT_SOCKET
    if not host.startswith("unix://"):
        return True
    return _ipvs_present()


def _endpoint_spec(mode: str, port: int | None) -> Any:
    """The service's EndpointSpec: ``port`` on the mesh (VIP), or a random host port per replica (DNS RR)."""
    from docker.types import EndpointSpec

    if mode == "host":
        return EndpointSpec(
            mode="dnsrr", ports=[{"Protocol": "tcp", "TargetPort": CONTAINER_PORT, "PublishMode": "host"}]
        )
    return EndpointSpec(mode="vip", ports={port or CONTAINER_PORT: CONTAINER_PORT})


def scale(
    replicas: int,
    *,
    image: str = CPU_IMAGE,
    port: int | None = None,
    publish_mode: str = "auto",
    init_swarm: bool = False,
    name: str = DEFAULT_NAME,
    update_image: str | None = None,
    model: str | None = None,
    env: dict[str, str] | None = None,
    api_key: str | None = None,
    docker_client: DockerClient | None = None,
) -> ServiceInfo:
    """Run ``replicas`` server replicas as one swarm service behind ``port`` (the routing mesh).

    ``publish_mode`` ``ingress``: the mesh publishes ``port`` (default 8001)
    on every interface of the node and spreads connections over the replicas.
    ``host``: each replica publishes a port of its own (chosen by the engine;
    see :attr:`ServiceInfo.replica_urls`) and clients spread the load, for
    kernels without IPVS. ``auto`` (default): ingress where
    :func:`routing_mesh_available`, else host.

    Makes this engine a one-node swarm (advertise address 127.0.0.1) only when
    ``init_swarm``; otherwise no swarm is an :class:`EnvironmentProblem`. An
    existing service of ours is scaled (``image`` is then ignored) and, with
    ``update_image``, rolled to that image one replica at a time, new before
    old, rolling back on failure. Returns at once; see :func:`wait_replicas`.
    """
    from docker.types import RestartPolicy, ServiceMode, UpdateConfig

    if replicas < 0:
        raise UsageError(f"replicas {replicas}: expected 0 or more")
    if publish_mode not in PUBLISH_MODES:
        raise UsageError(f"publish mode {publish_mode!r}: expected one of {', '.join(PUBLISH_MODES)}")
    mode = publish_mode
    if mode == "auto":
        mode = "ingress" if routing_mesh_available() else "host"
    if mode == "host" and port is not None:
        raise UsageError(
            "--port needs the routing mesh (--publish-mode ingress); in host mode every replica "
            "gets a port of its own (see `twi-asr docker status`)"
        )
    dc = _dc(docker_client)
    state, manager = _swarm_state(dc)
    if state != "active":
        if not init_swarm:
            raise EnvironmentProblem(
                "this Docker engine is not in a swarm: pass --init-swarm to make it a one-node swarm "
                "(advertise address 127.0.0.1)"
            )
        with _mapped("initialising a one-node swarm"):
            dc.swarm.init(advertise_addr="127.0.0.1")
    elif not manager:
        raise EnvironmentProblem(
            "this Docker engine is a swarm worker: run `twi-asr docker scale` on a manager"
        )
    new_image = update_image
    if new_image is not None:
        _require_image(dc, new_image)
    rolling = UpdateConfig(
        parallelism=1,
        delay=2_000_000_000,
        order="start-first",
        failure_action="rollback",
        monitor=30_000_000_000,
    )
    existing = _our_services(dc, name)
    if not existing:
        with _mapped("listing services"):
            clash = [s for s in dc.services.list(filters={"name": name}) if s.name == name]
        if clash:
            raise EnvironmentProblem(
                f"a swarm service named {name} exists but is not ours; pass another --name"
            )
        if new_image is None:
            _require_image(dc, image)
        environment = server_env(env, model=model, api_key=api_key)
        with _mapped(f"creating service {name}", image=new_image or image, port=port or CONTAINER_PORT):
            service = dc.services.create(
                new_image or image,
                name=name,
                labels=dict(_LABELS),
                container_labels={SERVICE_LABEL: name},
                env=[f"{k}={v}" for k, v in environment.items()],
                mode=ServiceMode("replicated", replicas=replicas),
                endpoint_spec=_endpoint_spec(mode, port),
                update_config=rolling,
                restart_policy=RestartPolicy(condition="on-failure", delay=5_000_000_000, max_attempts=5),
            )
        return _service_info(service)
    service = existing[0]
    current = _service_info(service)
    changes: dict[str, Any] = {}
    if current.replicas != replicas:
        changes["mode"] = ServiceMode("replicated", replicas=replicas)
    if new_image is not None and new_image != current.image:
        changes["image"] = new_image
        changes["update_config"] = rolling
    if current.publish_mode != mode or (mode == "ingress" and current.port != (port or CONTAINER_PORT)):
        changes["endpoint_spec"] = _endpoint_spec(mode, port)
    if changes:
        with _mapped(f"updating service {name}", image=new_image, port=port):
            service.update(**changes)
    return _service_info(service)


def _require_image(dc: DockerClient, image: str) -> None:
    from docker.errors import ImageNotFound

    with _mapped(f"looking up image {image}", image=image):
        try:
            dc.images.get(image)
        except ImageNotFound:
            raise map_docker_error(ImageNotFound(f"No such image: {image}"), image=image) from None


def wait_replicas(
    name: str = DEFAULT_NAME,
    timeout_s: float = 300.0,
    *,
    interval_s: float = 2.0,
    on_wait: Callable[[ServiceInfo], None] | None = None,
    docker_client: DockerClient | None = None,
) -> ServiceInfo:
    """Wait until every replica of our service ``name`` runs (its tasks' state); raise after ``timeout_s``."""
    dc = _dc(docker_client)
    services = _our_services(dc, name)
    if not services:
        raise EnvironmentProblem(f"no twi-asr service named {name} (see `twi-asr docker status`)")
    deadline = time.monotonic() + timeout_s
    while True:
        info = _service_info(services[0])
        if info.running >= info.replicas and info.update_state not in ("updating", "rollback_started"):
            return info
        if on_wait is not None:
            on_wait(info)
        if time.monotonic() >= deadline:
            raise ContainerFailed(
                f"service {name}: {info.running}/{info.replicas} replicas running after {timeout_s:g} s"
                + (f" (update {info.update_state})" if info.update_state else "")
                + "; see the latest task errors",
                info.errors,
                title="latest task errors",
            )
        time.sleep(interval_s)


def wait_service_ready(
    name: str = DEFAULT_NAME,
    timeout_s: float = 60.0,
    *,
    interval_s: float = 1.0,
    docker_client: DockerClient | None = None,
) -> ServiceInfo:
    """After :func:`wait_replicas`: wait until every URL of the service answers ``/ready`` with 200.

    Behind the mesh that is the one published port; in host mode, every
    replica's own port. A mesh port that never answers while the replicas run
    means the routing mesh does not work on this engine (no IPVS): the error
    says to scale with ``--publish-mode host``.
    """
    dc = _dc(docker_client)
    services = _our_services(dc, name)
    if not services:
        raise EnvironmentProblem(f"no twi-asr service named {name} (see `twi-asr docker status`)")
    deadline = time.monotonic() + timeout_s
    while True:
        info = _service_info(services[0])
        urls = info.urls
        waiting = [u for u in urls if (_http_get(u.rstrip("/") + "/ready") or (0, {}))[0] != 200]
        if urls and not waiting and (info.url or len(urls) >= info.replicas):
            return info
        if time.monotonic() >= deadline:
            if info.publish_mode == "ingress" and info.running >= info.replicas > 0:
                raise EnvironmentProblem(
                    f"service {name}: {info.running} replicas run but nothing answers on the mesh port "
                    f"{info.port}; this engine's routing mesh does not work (no IPVS in its kernel?): "
                    f"`twi-asr docker stop {name}`, then scale with --publish-mode host"
                )
            raise ContainerFailed(
                f"service {name}: not ready after {timeout_s:g} s "
                f"({len(urls) - len(waiting)}/{info.replicas} replicas answer /ready)",
                info.errors,
                title="latest task errors",
            )
        time.sleep(interval_s)


# ----------------------------------------------------------------- batch
@contextlib.contextmanager
def serving_container(
    *,
    image: str = CPU_IMAGE,
    name: str = DEFAULT_NAME,
    port: int | None = None,
    model: str | None = None,
    api_key: str | None = None,
    gpu: bool = False,
    env: dict[str, str] | None = None,
    timeout_s: float = 300.0,
    on_status: Callable[[str], None] | None = None,
    docker_client: DockerClient | None = None,
) -> Iterator[str]:
    """Yield the base URL of a ready server container; stop it afterwards if this started it.

    Reuses our running container ``name`` when it publishes a port (and leaves
    it running); otherwise starts one from ``image`` (``port`` None = any free
    port), waits until ``/ready`` answers, and on exit (normal, error or
    Ctrl-C) stops and removes it. This is what ``twi-asr batch --docker`` and
    ``twi-asr docker batch`` stand on: the user never runs ``docker`` by hand.
    """
    say = on_status or (lambda _m: None)
    dc = _dc(docker_client)
    existing = _find_container(dc, name)
    if existing is not None and existing.status == "running" and container_url(existing):
        url = str(container_url(existing))
        say(f"using the running container {name} at {url}")
        yield url
        return
    started = run_server(
        image, name=name, port=port, model=model, env=env, api_key=api_key, gpu=gpu, docker_client=dc
    )
    try:
        say(f"started container {started.name} from {image}; waiting for the model to load ...")
        url = wait_ready(started, None, timeout_s)
        say(f"container {started.name} ready at {url}")
        yield url
    finally:
        with contextlib.suppress(Exception):
            _stop_container(started, keep=False, timeout=10)
        say(f"stopped container {started.name}")
