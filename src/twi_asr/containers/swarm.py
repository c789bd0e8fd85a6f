"""A swarm service of server replicas: scale it, roll its image, wait for its replicas.

``scale`` publishes the service on the routing mesh (one port, IPVS in the
kernel) or, in host mode, a port per replica. Our services carry the label
``twi-asr.managed=true``; their task containers ``twi-asr.service``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem, UsageError
from .common import (
    _DEFAULT_SOCKET,
    _LABELS,
    _MANAGED_FILTER,
    CONTAINER_PORT,
    CPU_IMAGE,
    DEFAULT_NAME,
    SERVICE_LABEL,
)
from .errors import ContainerFailed, _dc, _mapped, map_docker_error
from .hardening import MODELS_VOLUME, Limits, engine_cpus, parse_cpus, parse_memory
from .run import _http_get
from .secrets import remove_service_secrets
from .service_info import ServiceInfo, _service_info
from .service_spec import new_service_kwargs, task_changes

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.services import Service


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
    memory: str | int | None = None,
    cpus: str | float | None = None,
    models_volume: str | None = MODELS_VOLUME,
    docker_client: DockerClient | None = None,
) -> ServiceInfo:
    """Run ``replicas`` hardened server replicas as one swarm service behind ``port`` (the routing mesh).

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

    Each replica runs as :func:`.run.run_server`'s container does (read-only
    root, tmpfs /tmp, no capabilities, uid 10001, ``memory`` / ``cpus``
    limits, the volume ``models_volume`` on /models) but for
    ``no-new-privileges``, which this engine's API cannot set on a service
    (see :mod:`.hardening`). ``api_key`` (and secrets in ``env``) become
    Docker secrets at /run/secrets; a changed key rotates the secret. An
    existing service keeps its env and model; a new image, a new key, other
    limits or a missing hardening roll its replicas (see
    :func:`.service_spec.task_changes`).
    """
    from docker.types import RestartPolicy, ServiceMode, UpdateConfig

    if replicas < 0:
        raise UsageError(f"replicas {replicas}: expected 0 or more")
    if publish_mode not in PUBLISH_MODES:
        raise UsageError(f"publish mode {publish_mode!r}: expected one of {', '.join(PUBLISH_MODES)}")
    mode = publish_mode
    if mode == "auto":
        mode = "ingress" if routing_mesh_available() else "host"
    if memory is not None:
        parse_memory(memory)  # a bad value is a usage error before the engine is asked anything
    if cpus is not None:
        parse_cpus(cpus)
    if mode == "host" and port is not None:
        raise UsageError(
            "--port needs the routing mesh (--publish-mode ingress); in host mode every replica "
            "gets a port of its own (see `twi-asr docker status`)"
        )
    dc = _dc(docker_client)
    ncpu = engine_cpus(dc)
    limits = Limits.resolve(memory, cpus, ncpu)  # --cpus above the engine's: before any swarm is made
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
    new_image_id = _image_id(dc, new_image) if new_image is not None else None
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
        target = new_image or image
        kwargs = new_service_kwargs(
            dc,
            name,
            image_id=new_image_id or _image_id(dc, target),
            env=env,
            model=model,
            api_key=api_key,
            limits=limits,
            models_volume=models_volume,
        )
        try:
            with _mapped(f"creating service {name}", image=target, port=port or CONTAINER_PORT):
                service = dc.services.create(
                    target,
                    name=name,
                    labels=dict(_LABELS),
                    container_labels={SERVICE_LABEL: name},
                    mode=ServiceMode("replicated", replicas=replicas),
                    endpoint_spec=_endpoint_spec(mode, port),
                    update_config=rolling,
                    restart_policy=RestartPolicy(condition="on-failure", delay=5_000_000_000, max_attempts=5),
                    **kwargs,
                )
        except BaseException:
            remove_service_secrets(dc, name)
            raise
        return _service_info(service)
    service = existing[0]
    current = _service_info(service)
    changes: dict[str, Any] = {}
    if current.replicas != replicas:
        changes["mode"] = ServiceMode("replicated", replicas=replicas)
    if new_image is not None and new_image != current.image:
        changes["image"] = new_image
    else:
        new_image_id = None
    changes.update(
        task_changes(
            dc,
            service,
            new_image_id=new_image_id,
            env=env,
            api_key=api_key,
            memory=memory,
            cpus=cpus,
            engine_cpus=ncpu,
            models_volume=models_volume,
        )
    )
    if set(changes) - {"mode", "endpoint_spec"}:  # the tasks change: roll them one at a time
        changes["update_config"] = rolling
    if current.publish_mode != mode or (mode == "ingress" and current.port != (port or CONTAINER_PORT)):
        changes["endpoint_spec"] = _endpoint_spec(mode, port)
    if changes:
        with _mapped(f"updating service {name}", image=new_image, port=port):
            service.update(**changes)
        if "secrets" in changes:
            remove_service_secrets(dc, name, keep=changes["secrets"])
    return _service_info(service)


def _image_id(dc: DockerClient, image: str) -> str:
    """The id of the local ``image``; a missing one is the usual "build it" problem."""
    from docker.errors import ImageNotFound

    with _mapped(f"looking up image {image}", image=image):
        try:
            return str(dc.images.get(image).id)
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
