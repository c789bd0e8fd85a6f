"""One server container: run it, wait until it is ready, list ours, stop and remove them.

``run_server`` starts a detached ``twi-asr serve`` container, ``wait_ready``
polls its ``/ready``; ``serving_container`` wraps both for ``twi-asr batch
--docker``. Only containers labelled ``twi-asr.managed=true`` are touched.
``docker`` and ``httpx`` are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem
from .common import (
    _LABELS,
    _LOG_TAIL,
    _MANAGED_FILTER,
    CONTAINER_PORT,
    CPU_IMAGE,
    DEFAULT_NAME,
    MANAGED_LABEL,
)
from .errors import ContainerFailed, _dc, _mapped
from .hardening import (
    MODELS_DIR,
    MODELS_VOLUME,
    Limits,
    container_kwargs,
    engine_cpus,
    mounts_models,
    parse_cpus,
    parse_memory,
)
from .secrets import remove_container_secrets, server_env, write_container_secrets

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container


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
    memory: str | int | None = None,
    cpus: str | float | None = None,
    models_volume: str | None = MODELS_VOLUME,
    docker_client: DockerClient | None = None,
) -> Container:
    """Start a detached, hardened ``twi-asr serve`` container from ``image`` and return it (not yet ready).

    The server's port 8001 is published on ``bind:port`` (127.0.0.1 unless
    asked; ``port`` None or 0 = any free port, see :func:`container_url`).
    ``model`` becomes ``TWI_ASR_MODEL``; ``api_key`` (and any secret in
    ``env``) a read-only file under /run/secrets, never a plain variable (see
    :mod:`.secrets`); the image's id ``TWI_ASR_IMAGE_ID``. ``gpu`` asks for
    every NVIDIA GPU; ``volumes`` maps host paths to container paths (append
    ``:ro`` for read-only).

    The runtime is least privilege (:mod:`.hardening`): read-only root, a
    tmpfs /tmp, no capabilities, ``no-new-privileges``, uid 10001, ``memory``
    (default 4g) and ``cpus`` (default 2, at most the engine's) limits, and
    the named volume ``models_volume`` on /models (None: none) unless
    ``volumes`` mount something there. No restart policy. A stopped container
    of ours with the same name is replaced; a running one is an error.
    """
    from docker.types import DeviceRequest

    if memory is not None:
        parse_memory(memory)  # a bad value is a usage error before the engine is asked anything
    if cpus is not None:
        parse_cpus(cpus)
    dc = _dc(docker_client)
    limits = Limits.resolve(memory, cpus, engine_cpus(dc))
    existing = _find_container(dc, name)
    if existing is not None:
        if existing.status in ("running", "restarting", "paused"):
            where = container_url(existing) or "no published port"
            raise EnvironmentProblem(
                f"container {name} is already running ({where}): use it, or `twi-asr docker stop {name}`"
            )
        with _mapped(f"removing the stopped container {name}"):
            existing.remove(force=True)
    with _mapped(f"looking up image {image}", image=image):
        image_id = str(dc.images.get(image).id)
    environment, files = server_env(env, model=model, api_key=api_key, image_id=image_id)
    mounts: dict[str, dict[str, str]] = {}
    for host, target in (volumes or {}).items():
        path, _, mode = target.partition(":")
        mounts[str(Path(host).expanduser().resolve())] = {"bind": path, "mode": mode or "rw"}
    if models_volume and not mounts_models([m["bind"] for m in mounts.values()]):
        mounts[models_volume] = {"bind": MODELS_DIR, "mode": "rw"}
    kwargs: dict[str, Any] = {
        "name": name,
        "detach": True,
        "labels": dict(_LABELS),
        "environment": environment,
        "ports": {f"{CONTAINER_PORT}/tcp": (bind, port or None)},
        "restart_policy": {"Name": "no"},
        **container_kwargs(limits),
    }
    if gpu:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    try:
        mounts.update(write_container_secrets(name, files))
        if mounts:
            kwargs["volumes"] = mounts
        with _mapped(f"creating container {name}", image=image, name=name, port=port, gpu=gpu):
            container = dc.containers.create(image, **kwargs)
    except BaseException:
        remove_container_secrets(name)
        raise
    try:
        with _mapped(f"starting container {name}", image=image, name=name, port=port, gpu=gpu):
            container.start()
            container.reload()
    except BaseException:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        remove_container_secrets(name)
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
            state = (container.attrs or {}).get("State") or {}
            why = f"exited (code {state.get('ExitCode')})"
            if state.get("OOMKilled"):
                why = "was killed for using more memory than its limit (raise it with --memory)"
            raise ContainerFailed(
                f"container {container.name} {why} before it was ready", _log_lines(container)
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


def list_managed(*, docker_client: DockerClient | None = None) -> list[ContainerInfo]:
    """Every container labelled ``twi-asr.managed=true``, running or not, by name."""
    dc = _dc(docker_client)
    with _mapped("listing containers"):
        found = dc.containers.list(all=True, filters=dict(_MANAGED_FILTER))
    return sorted((_info(c) for c in found if _is_managed(c)), key=lambda i: i.name)


def _stop_container(container: Container, *, keep: bool, timeout: int) -> None:
    with _mapped(f"stopping container {container.name}"):
        if container.status in ("running", "restarting", "paused"):
            container.stop(timeout=timeout)
        if not keep:
            container.remove(force=True)
            remove_container_secrets(str(container.name))


def remove(name: str, *, docker_client: DockerClient | None = None) -> None:
    """Remove our container ``name`` at once, running or not (no graceful stop)."""
    dc = _dc(docker_client)
    container = _find_container(dc, name)
    if container is None:
        raise EnvironmentProblem(f"no twi-asr container named {name} (see `twi-asr docker status`)")
    with _mapped(f"removing container {name}"):
        container.remove(force=True)
    remove_container_secrets(name)


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
    memory: str | int | None = None,
    cpus: str | float | None = None,
    timeout_s: float = 300.0,
    on_status: Callable[[str], None] | None = None,
    docker_client: DockerClient | None = None,
) -> Iterator[str]:
    """Yield the base URL of a ready server container; stop it afterwards if this started it.

    Reuses our running container ``name`` when it publishes a port (and leaves
    it running); otherwise starts one from ``image`` (``port`` None = any free
    port), hardened as :func:`run_server` makes it (``memory``, ``cpus``),
    waits until ``/ready`` answers, and on exit (normal, error or Ctrl-C)
    stops and removes it. This is what ``twi-asr batch --docker`` and
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
        image,
        name=name,
        port=port,
        model=model,
        env=env,
        api_key=api_key,
        gpu=gpu,
        memory=memory,
        cpus=cpus,
        docker_client=dc,
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
