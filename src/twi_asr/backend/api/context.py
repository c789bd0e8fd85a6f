"""What every route needs, built once per process: settings, database, storage, ASR pool, metrics."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..settings import BackendSettings

__all__ = ["AppContext", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("twi_asr_backend_request_id", default=None)


@dataclass
class AppContext:
    """The process's long-lived parts (kept on ``app.state.ctx``)."""

    settings: BackendSettings
    db: Any  # db.engine.Database
    blobs: Any  # blobs.BlobStore
    asr: Any  # asr.AsrPool
    metrics: Any  # metrics.BackendMetrics
    secret: bytes
    workers: Any = None  # worker.WorkerPool, when this process runs workers
