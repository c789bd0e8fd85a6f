"""The backend's FastAPI app: routers, error handlers, the request boundary and the lifespan.

``create_app(settings)`` builds it. The lifespan opens the database (and
migrates it), the storage and the ASR pool, then starts the job workers; on
shutdown the workers finish their current step and stop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ... import __version__
from ..settings import BackendSettings
from . import (
    errors,
    routes_jobs,
    routes_openai,
    routes_ops,
    routes_transcripts,
    routes_uploads,
    routes_users,
    routes_web,
)
from .context import AppContext
from .middleware import Boundary

__all__ = ["build_context", "create_app"]

log = logging.getLogger("twi_asr.backend")


def build_context(settings: BackendSettings, *, migrate: bool = True) -> AppContext:
    """Open everything the backend needs (database migrated, storage, ASR pool, metrics, secret)."""
    from ..asr import AsrPool
    from ..blobs import open_store
    from ..db.engine import Database
    from ..db.migrate import upgrade
    from ..metrics import BackendMetrics
    from ..security import load_secret_key

    db = Database(settings.resolved_database_url())
    if migrate:
        upgrade(db)
    secret = load_secret_key(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.data_dir
    )
    return AppContext(
        settings=settings,
        db=db,
        blobs=open_store(settings.resolved_storage(), public_endpoint_url=settings.s3_public_endpoint_url),
        asr=AsrPool.from_settings(settings),
        metrics=BackendMetrics(db),
        secret=secret,
    )


def create_app(settings: BackendSettings | None = None, *, context: AppContext | None = None) -> Any:
    """The ASGI app: FastAPI wrapped in the request boundary (``.app`` is the FastAPI object).

    Workers start with the app's lifespan; pass ``context`` to share an open one (tests, benches).
    """
    settings = settings or (context.settings if context else BackendSettings())
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or build_context(settings)
        app.state.ctx = ctx
        holder["ctx"] = ctx
        if settings.workers > 0 and ctx.workers is None:
            from ..worker import WorkerPool

            ctx.workers = WorkerPool(settings, ctx.db, ctx.blobs, ctx.asr, ctx.metrics)
            ctx.workers.start(settings.workers)
        log.info(
            "backend ready: database %s, storage %s, ASR %s, %d workers",
            ctx.db.dialect,
            ctx.blobs.location,
            ", ".join(settings.asr_url),
            settings.workers,
        )
        try:
            yield
        finally:
            if ctx.workers is not None:
                ctx.workers.stop(timeout_s=10.0)
            if context is None:
                ctx.db.dispose()

    app = FastAPI(
        title="twi-asr backend",
        version=__version__,
        lifespan=lifespan,
        description="Users, API keys, uploads, transcription jobs and webhooks in front of the "
        'twi-asr inference servers (8001). Errors: {"error": {"code", "message", ...}}.',
    )
    errors.install(app)
    for module in (
        routes_ops,
        routes_jobs,
        routes_transcripts,
        routes_uploads,
        routes_openai,
        routes_users,
        routes_web,
    ):
        app.include_router(module.router)
    _add_web_app(app)

    return Boundary(
        app, max_body_bytes=int(settings.max_upload_mb * 1024 * 1024), metrics=_LazyMetrics(holder)
    )


def _add_web_app(app: FastAPI) -> None:
    """The pages people use (``/``, ``/jobs/ID``, ``/account``, ``/admin``) and their static files."""
    from fastapi.staticfiles import StaticFiles

    from ..web.render import STATIC_DIR
    from . import routes_pages

    app.include_router(routes_pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")


class _LazyMetrics:
    """The boundary counts into the context's metrics once the lifespan has made them."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder

    @property
    def requests(self) -> Any:
        ctx = self.holder.get("ctx")
        return ctx.metrics.requests if ctx is not None else _Null()


class _Null:
    def labels(self, **_: str) -> _Null:
        return self

    def inc(self, *_: Any) -> None:
        pass
