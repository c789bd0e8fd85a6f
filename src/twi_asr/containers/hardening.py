"""The least-privilege runtime every server container and swarm service of ours gets by default.

A read-only root filesystem, a size-limited tmpfs on ``/tmp`` (uploads over
1 MB spool there, library caches go there: the image points ``HOME``,
``TMPDIR`` and ``XDG_CACHE_HOME`` at it), every capability dropped,
``no-new-privileges``, the image's non-root uid ``10001:10001``, memory and
CPU limits (4 GiB, 2 CPUs unless asked), and one writable place for models:
the named volume ``twi-asr-models`` on ``/models`` (the hub cache and
converted models land there, and survive a restart), unless the user mounts
something on ``/models`` themselves.

Swarm services get the same, with one gap: this project's engine (Docker
20.10, API 1.41) has no ``NoNewPrivileges`` in a service's
``ContainerSpec.Privileges`` (only newer engine APIs added it): it drops the
field, checked on the real engine, so there a service's containers run
without ``no-new-privileges``. It is asked for anyway, so an engine that
knows it applies it; the uid, the dropped capabilities and the read-only root
(no setuid binary can be written) hold regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .errors import _mapped

if TYPE_CHECKING:
    from docker import DockerClient

RUN_USER = "10001:10001"
"""The image's user (Dockerfile ``USER``), set again so a rebuilt image cannot run as root by accident."""
TMP_SIZE_BYTES = 512 * 1024**2
TMP_MODE = 0o1777
MODELS_DIR = "/models"
MODELS_VOLUME = "twi-asr-models"
"""The named volume on /models: downloads and conversions made at run time live on across restarts."""
DEFAULT_MEMORY = "4g"
DEFAULT_CPUS = 2.0
NO_NEW_PRIVILEGES = "no-new-privileges:true"
_MIN_MEMORY = 6 * 1024**2  # the engine refuses less
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_memory(value: str | int) -> int:
    """Bytes in a Docker-style size (``4g``, ``512m``, ``1.5GiB``, ``1073741824``); UsageError if bad."""
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY.match(value)
        if not match:
            raise UsageError(f"--memory {value!r}: expected a size such as 512m, 4g or 1.5g")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < _MIN_MEMORY:
        raise UsageError(f"--memory {value!r}: at least 6m (the engine refuses less)")
    return size


def parse_cpus(value: str | float) -> float:
    """CPUs as a positive number (``2``, ``0.5``); UsageError if it is not one."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--cpus {value!r}: expected a number of CPUs such as 2 or 0.5") from None
    if not cpus >= 0.01 or cpus != cpus or cpus == float("inf"):
        raise UsageError(f"--cpus {value!r}: expected at least 0.01")
    return cpus


@dataclass(frozen=True)
class Limits:
    """Memory and CPU limits of one container or of each replica of a service."""

    memory_bytes: int
    nano_cpus: int
    """CPUs x 10^9, the engine's unit (``--cpus 2`` = 2_000_000_000)."""

    @classmethod
    def resolve(cls, memory: str | int | None, cpus: str | float | None, engine_cpus: int | None) -> Limits:
        """The limits asked for, or the defaults; ``engine_cpus`` caps the default and checks an explicit one.

        The engine refuses a CPU limit above its own CPU count, so the
        default 2 becomes 1 on a one-CPU engine, and an explicit ``--cpus``
        above the count is a usage error that names it.
        """
        wanted = parse_cpus(cpus) if cpus is not None else DEFAULT_CPUS
        if engine_cpus:
            if cpus is None:
                wanted = min(wanted, float(engine_cpus))
            elif wanted > engine_cpus:
                raise UsageError(f"--cpus {cpus}: this Docker engine has {engine_cpus} CPUs")
        size = parse_memory(memory if memory is not None else DEFAULT_MEMORY)
        return cls(memory_bytes=size, nano_cpus=int(round(wanted * 1e9)))


def engine_cpus(dc: DockerClient) -> int | None:
    """How many CPUs the engine has (``docker info``'s NCPU), None when it does not say."""
    with _mapped("reading the engine's CPU count"):
        count = (dc.info() or {}).get("NCPU")
    return int(count) if count else None


def mounts_models(targets: list[str]) -> bool:
    """Does the user mount something on /models (or above it) themselves?"""
    return any(t.rstrip("/") in ("", MODELS_DIR) for t in targets)


def container_kwargs(limits: Limits) -> dict[str, Any]:
    """docker-py ``containers.create`` kwargs for the hardened runtime (the /models volume apart)."""
    return {
        "user": RUN_USER,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE_BYTES // 1024**2}m,mode={TMP_MODE:o}"},
        "security_opt": [NO_NEW_PRIVILEGES],
        "cap_drop": ["ALL"],
        "mem_limit": limits.memory_bytes,
        "nano_cpus": limits.nano_cpus,
    }


def service_kwargs(limits: Limits, *, models_volume: str | None) -> dict[str, Any]:
    """docker-py ``services.create`` / ``update`` kwargs for the hardened runtime of each replica.

    ``privileges`` asks for ``NoNewPrivileges``, which older engines (API 1.41
    here) drop (see the module docstring).
    """
    from docker.types import Mount, Resources

    mounts = [Mount(target="/tmp", source=None, type="tmpfs", tmpfs_size=TMP_SIZE_BYTES, tmpfs_mode=TMP_MODE)]
    if models_volume:
        mounts.append(Mount(target=MODELS_DIR, source=models_volume, type="volume"))
    return {
        "user": RUN_USER,
        "read_only": True,
        "cap_drop": ["ALL"],
        "privileges": {"NoNewPrivileges": True},
        "mounts": mounts,
        "resources": Resources(cpu_limit=limits.nano_cpus, mem_limit=limits.memory_bytes),
    }


def service_is_hardened(
    container_spec: dict[str, Any], resources: dict[str, Any], limits: Limits, *, models_volume: str | None
) -> bool:
    """Does a service's current spec already run the way :func:`service_kwargs` asks (limits included)?"""
    caps = container_spec.get("CapabilityDrop") or []
    targets = [m.get("Target") for m in container_spec.get("Mounts") or []]
    wanted = {"NanoCPUs": limits.nano_cpus, "MemoryBytes": limits.memory_bytes}
    return (
        bool(container_spec.get("ReadOnly"))
        and "ALL" in caps
        and container_spec.get("User") == RUN_USER
        and "/tmp" in targets
        and (not models_volume or MODELS_DIR in targets)
        and all((resources.get("Limits") or {}).get(k) == v for k, v in wanted.items())
    )
