"""The web app's pages: server-rendered Jinja2 shells (``backend/web``) that plain JavaScript fills in.

Every page needs a signed-in browser session (else a redirect to ``/login``);
the page carries the session's CSRF token in a ``<meta>`` tag, and its script
calls the same JSON API any client uses (``/v1/...``) with ``X-CSRF-Token``.
A job that is not yours is the same 404 page as one that does not exist.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...languages import WHISPER_LANGUAGES
from ...writers import FORMATS
from ..db.models import JOB_STATES
from ..errors import BackendError, Unauthorized
from ..services import jobs
from ..services.views import job_view
from ..web.render import render
from .deps import Auth, Ctx, authenticate

__all__ = ["page_auth", "router"]

router = APIRouter(include_in_schema=False)


def page_auth(request: Request, ctx: Any) -> Auth | None:
    """The browser's session, or None (no cookie, expired, or a disabled user)."""
    if not request.cookies:
        return None
    try:
        auth = authenticate(request, ctx, check_csrf=False)
    except Unauthorized:
        return None
    return auth if auth.via == "session" else None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def languages() -> list[tuple[str, str]]:
    """(code, label) for the language menu: auto, Twi (the checkpoint's default), then Whisper's."""
    listed = sorted(((c, n.title()) for c, n in WHISPER_LANGUAGES.items()), key=lambda p: p[1])
    return [("", "Detect automatically"), ("tw", "Twi (checkpoint default)"), *listed]


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request, ctx: Ctx) -> Response:
    """New job (files, drag and drop, recording) and the live list of your jobs."""
    auth = page_auth(request, ctx)
    if auth is None:
        return _to_login(request)
    return render(
        request,
        "jobs.html",
        auth,
        title="Jobs",
        languages=languages(),
        formats=FORMATS,
        states=JOB_STATES,
        max_upload_mb=ctx.settings.max_upload_mb,
        direct_bytes=int(ctx.settings.web_direct_upload_mb * 1024 * 1024),
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, ctx: Ctx) -> Response:
    """One job: the player, segments (click to seek, edit), search, downloads."""
    auth = page_auth(request, ctx)
    if auth is None:
        return _to_login(request)
    try:
        with ctx.db.session() as s:
            job = job_view(jobs.get_job(s, auth.user, job_id))
    except BackendError as exc:
        return error_page(request, auth, exc)
    return render(request, "job.html", auth, title=job["filename"], job=job, formats=FORMATS)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, ctx: Ctx) -> Response:
    """Your password and your API keys."""
    auth = page_auth(request, ctx)
    if auth is None:
        return _to_login(request)
    return render(request, "account.html", auth, title="Account")


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(request: Request, ctx: Ctx) -> Response:
    """Users with their quotas and audio minutes per day; the ASR servers and whether each is ready."""
    auth = page_auth(request, ctx)
    if auth is None:
        return _to_login(request)
    if not auth.user.is_admin:
        return error_page(
            request, auth, BackendError("this page is for admins", code="admin_required"), status=403
        )
    servers = await run_in_threadpool(ctx.asr.servers_status)
    return render(
        request,
        "admin.html",
        auth,
        title="Admin",
        servers=servers,
        default_quotas={
            "max_concurrent_jobs": ctx.settings.max_concurrent_jobs,
            "audio_minutes_per_day": ctx.settings.audio_minutes_per_day,
        },
    )


def error_page(
    request: Request, auth: Auth | None, exc: BackendError, *, status: int | None = None
) -> Response:
    """An error said in words, with the API's code, as a page."""
    return render(
        request,
        "error.html",
        auth,
        title="Not found" if exc.status == 404 else "Error",
        message=exc.message,
        code=exc.code,
        status_code=status or exc.status,
    )
