"""A swarm service of server replicas: scale it, roll its image, wait for its replicas.

``scale`` publishes the service on the routing mesh (one port, IPVS in the
kernel) or, in host mode, a port per replica. Our services carry the label
``twi-asr.managed=true``; their task containers ``twi-asr.service``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from .run import _http_get, server_env

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.services import Service


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
