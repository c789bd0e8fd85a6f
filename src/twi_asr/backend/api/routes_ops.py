"""Operations: ``/health`` (the process answers), ``/ready`` (database, storage, ASR), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .deps import Ctx

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is up")
def health() -> dict[str, str]:
    """200 while the process answers; says nothing of what it depends on (that is /ready)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Database, storage and at least one ASR server answer",
    responses={503: {"description": "Something it needs is down; checks say what and why"}},
)
async def ready(ctx: Ctx) -> JSONResponse:
    """200 when every dependency answers; 503 with the reason of each that does not."""

    def check() -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        ok = True
        for name, probe in (("database", ctx.db.ping), ("storage", ctx.blobs.check)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                ok, checks[name] = False, str(getattr(exc, "message", exc))
        asr_ok, why = ctx.asr.ready()
        checks["asr"] = why
        return ok and asr_ok, checks

    ok, checks = await run_in_threadpool(check)
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: Ctx) -> Response:
    """Jobs by state and queue age (from the database), job latency and requests (this process)."""
    body, kind = ctx.metrics.render()
    return Response(body, media_type=kind)
