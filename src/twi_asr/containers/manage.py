"""What works by name on a container or a swarm service of ours: its logs, stop, health.

A name is looked up as our container first, then as our service (when this
engine is a swarm manager); anything without the ``twi-asr.managed`` label is
left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem, UsageError
from .common import _MANAGED_FILTER
from .errors import _dc, _mapped
from .run import _find_container, _health_of, _http_get, _is_managed, _stop_container, container_url
from .secrets import remove_service_secrets
from .swarm import _our_services, _service_info, _swarm_state

if TYPE_CHECKING:
    from docker import DockerClient


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
            remove_service_secrets(dc, str(s.name))
            done.append(f"service {s.name}")
    if name is not None and not done:
        raise EnvironmentProblem(
            f"no twi-asr container or service named {name} (see `twi-asr docker status`)"
        )
    return done


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
