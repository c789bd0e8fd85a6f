"""What ``status`` and ``scale`` say about a swarm service of ours: replicas, ports, URLs, errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .common import CONTAINER_PORT
from .errors import _mapped

if TYPE_CHECKING:
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
