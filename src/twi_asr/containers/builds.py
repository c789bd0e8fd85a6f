"""Which build each of our containers and swarm replicas runs: its image's labels next to its live /health.

``twi-asr docker status`` shows, for every container and every running replica,
the version, commit, lock sha256, image id, creation time and weights hash as
the image's labels state them and as the server reports them (``/health``'s
``build`` and ``weights_hash``), and flags where the two disagree (a server
that loads another model than the one baked, an image relabelled by hand, a
``TWI_ASR_IMAGE_ID`` that is not the image). A container's /health is asked
through its published port; a replica's from inside it (``exec``): behind the
routing mesh a port reaches some replica, not a chosen one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import labels as L
from . import run as _run
from .common import _MANAGED_FILTER
from .errors import _dc, _mapped

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

FIELDS = ("version", "commit", "lock_sha256", "image_id", "created", "source", "weights_hash")
"""What is compared, in the order ``status`` shows it."""
_LABEL_OF = {
    "version": L.VERSION,
    "commit": L.REVISION,
    "created": L.CREATED,
    "source": L.SOURCE,
    "lock_sha256": L.LOCK_SHA256,
    "weights_hash": L.WEIGHTS_HASH,
}
_EXEC_HEALTH = (
    "import os, urllib.request as u; "
    "print(u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TWI_ASR_PORT', '8001'), timeout=4)"
    ".read().decode())"
)


@dataclass(frozen=True)
class Provenance:
    """One container's build: from its image's labels and from its live server (None: no answer)."""

    name: str
    service: str | None
    labels: dict[str, str | None]
    live: dict[str, str | None] | None
    mismatches: tuple[str, ...]
    """The fields where the label and the live value are both known and differ."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def from_labels(labels: dict[str, str], image_id: str) -> dict[str, str | None]:
    """The compared fields as the image's labels state them (the image id is the image's own)."""
    out: dict[str, str | None] = {f: (labels.get(k) or None) for f, k in _LABEL_OF.items()}
    out["image_id"] = image_id or None
    if out["weights_hash"] == L.NO_MODEL:
        out["weights_hash"] = None  # no model baked: nothing to compare the served one with
    return {f: out.get(f) for f in FIELDS}


def from_health(body: dict[str, Any]) -> dict[str, str | None]:
    """The compared fields from a /health body (``build`` + ``weights_hash``)."""
    build = body.get("build") if isinstance(body.get("build"), dict) else {}
    out = {f: (str(build[f]) if build.get(f) else None) for f in FIELDS if f != "weights_hash"}
    out["weights_hash"] = str(body["weights_hash"]) if body.get("weights_hash") else None
    if not out.get("version") and body.get("version"):
        out["version"] = str(body["version"])
    return {f: out.get(f) for f in FIELDS}


def mismatches(labels: dict[str, str | None], live: dict[str, str | None] | None) -> tuple[str, ...]:
    """The fields known on both sides that differ (an id compared without ``sha256:``)."""
    if live is None:
        return ()
    out = []
    for f in FIELDS:
        a, b = labels.get(f), live.get(f)
        if a and b and a.removeprefix("sha256:") != b.removeprefix("sha256:"):
            out.append(f)
    return tuple(out)


def _live_by_exec(container: Container) -> dict[str, Any] | None:
    try:
        code, output = container.exec_run(["python3", "-c", _EXEC_HEALTH])
    except Exception:  # not running any more, no python3: simply no live answer
        return None
    if code != 0:
        return None
    try:
        body = json.loads(output.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return body if isinstance(body, dict) else None


def _provenance(dc: DockerClient, container: Container, service: str | None) -> Provenance:
    attrs = container.attrs or {}
    image_id = str(attrs.get("Image") or "")
    labels: dict[str, str] = {}
    if image_id:
        try:
            labels = dict(((dc.images.get(image_id).attrs or {}).get("Config") or {}).get("Labels") or {})
        except Exception:  # the image was removed since: its labels are unknown
            labels = {}
    from_image = from_labels(labels, image_id)
    body = None
    if container.status == "running":
        url = None if service else _run.container_url(container)
        if url:
            answer = _run._http_get(url.rstrip("/") + "/health")  # looked up here: tests patch it
            body = answer[1] if answer and answer[0] == 200 else None
        else:
            body = _live_by_exec(container)
    live = from_health(body) if body is not None else None
    return Provenance(
        name=str(container.name),
        service=service,
        labels=from_image,
        live=live,
        mismatches=mismatches(from_image, live),
    )


def container_builds(*, docker_client: DockerClient | None = None) -> dict[str, Provenance]:
    """Our containers' builds, by container name."""
    dc = _dc(docker_client)
    with _mapped("listing containers"):
        found = dc.containers.list(all=True, filters=dict(_MANAGED_FILTER))
        return {str(c.name): _provenance(dc, c, None) for c in found}


def replica_builds(service: str, *, docker_client: DockerClient | None = None) -> list[Provenance]:
    """The builds of a service's running replicas (their task containers on this node)."""
    dc = _dc(docker_client)
    with _mapped(f"listing the replicas of {service}"):
        found = dc.containers.list(filters={"label": f"com.docker.swarm.service.name={service}"})
        return [_provenance(dc, c, service) for c in sorted(found, key=lambda c: str(c.name))]


__all__ = ["FIELDS", "Provenance", "container_builds", "replica_builds"]
