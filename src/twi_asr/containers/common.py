"""Names every part of :mod:`twi_asr.containers` shares: image tags, the port, our labels.

Every container and service made here carries the label ``twi-asr.managed=true``
so ``status``, ``stop --all`` and ``logs`` find ours and never touch anyone else's.
"""

from __future__ import annotations

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
