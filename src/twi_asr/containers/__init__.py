"""The Docker engine, through docker-py (never the ``docker`` binary): build, run, wait, stop, scale.

Typed functions over docker-py's untyped kwargs, used by ``twi-asr docker ...``.
Every container and service made here carries the label ``twi-asr.managed=true``
so ``status``, ``stop --all`` and ``logs`` find ours and never touch anyone else's.

Every failure of the engine maps onto :mod:`twi_asr.errors` (exit code 3, a
one-line message that says what to do): no engine, no permission on its
socket, a missing image, a port already taken, no NVIDIA runtime for ``--gpu``,
no swarm. A docker-py traceback never reaches the user.

The parts, each with one job: :mod:`.common` (tags, port, labels),
:mod:`.errors` (the engine's errors mapped, the client), :mod:`.images`
(build, relabel, read files back), :mod:`.labels` (the provenance labels),
:mod:`.context` (a context tar with a model folder), :mod:`.stamping`
(``twi-asr docker build``), :mod:`.verify` (an image against its lock and
labels), :mod:`.builds` (each container's build: labels and live),
:mod:`.run` (one server container), :mod:`.swarm` (a service of replicas),
:mod:`.manage` (logs, stop, health of either by name).
``docker`` (the ``docker`` extra) and ``httpx`` are imported inside the
functions, so importing this package is cheap.
"""

from __future__ import annotations

from .common import CONTAINER_PORT, CPU_IMAGE, DEFAULT_NAME, GPU_IMAGE, MANAGED_LABEL
from .common import SERVICE_LABEL as SERVICE_LABEL  # not in __all__, as before
from .errors import ContainerFailed, ImageBuildError, client, map_docker_error
from .images import build_image, image_labels
from .manage import health, logs, stop
from .run import (
    ContainerInfo,
    container_url,
    list_managed,
    remove,
    run_server,
    serving_container,
    wait_ready,
)
from .run import server_env as server_env  # not in __all__, as before
from .stamping import BuildResult, build_server_image
from .swarm import (
    PUBLISH_MODES,
    ServiceInfo,
    list_services,
    routing_mesh_available,
    scale,
    wait_replicas,
    wait_service_ready,
)
from .verify import Report, verify_image

__all__ = [
    "CONTAINER_PORT",
    "CPU_IMAGE",
    "DEFAULT_NAME",
    "GPU_IMAGE",
    "MANAGED_LABEL",
    "PUBLISH_MODES",
    "BuildResult",
    "ContainerFailed",
    "ContainerInfo",
    "ImageBuildError",
    "Report",
    "ServiceInfo",
    "build_image",
    "build_server_image",
    "client",
    "container_url",
    "health",
    "image_labels",
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
    "verify_image",
    "wait_ready",
    "wait_replicas",
    "wait_service_ready",
]
