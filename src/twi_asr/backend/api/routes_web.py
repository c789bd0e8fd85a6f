"""Password login for browsers: a session cookie (HttpOnly, SameSite=Lax, Secure behind TLS) + CSRF.

``GET /login`` serves a small form carrying a CSRF token bound to a pre-login
cookie; ``POST /login`` checks both and the argon2 password; ``POST /logout``
needs the session's own CSRF token. The full web app builds on these.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ..errors import Forbidden, Unauthorized
from ..security import new_token, sign, verify_signature
from ..services import users
from .deps import SESSION_COOKIE, Ctx, authenticate
from .errors import error_doc
from .forms import STR, body_doc, object_schema, read_form

__all__ = ["router"]

router = APIRouter(tags=["web"])
PRELOGIN_COOKIE = "twi_asr_prelogin"


def _secure(request: Request, ctx: Any) -> bool:
    if ctx.settings.cookie_secure is not None:
        return bool(ctx.settings.cookie_secure)
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def safe_next(target: object) -> str:
    """Where to go after signing in: a path on this site only (never ``//evil`` or a full URL)."""
    text = str(target or "")
    if not text.startswith("/") or text.startswith("//") or "\\" in text or any(ord(c) < 32 for c in text):
        return "/"
    return text


@router.get("/login", response_class=HTMLResponse, summary="The login form")
def login_page(request: Request, ctx: Ctx, error: str | None = None, next: str = "/") -> HTMLResponse:
    """A form whose CSRF token is an HMAC of a random pre-login cookie (double submit, signed)."""
    return _login_form(request, ctx, error=error, next=next, status_code=200)


def _login_form(
    request: Request, ctx: Any, *, error: str | None, next: str, status_code: int
) -> HTMLResponse:
    """The login form, with an error said in words (401 after a wrong password)."""
    from ..web.render import render

    nonce = request.cookies.get(PRELOGIN_COOKIE) or new_token()
    page = render(
        request,
        "login.html",
        None,
        title="Sign in",
        login_csrf=sign(ctx.secret, "login", nonce),
        error=error,
        next=safe_next(next),
        status_code=status_code,
    )
    page.set_cookie(
        PRELOGIN_COOKIE, nonce, httponly=True, samesite="lax", secure=_secure(request, ctx), max_age=3600
    )
    return page


LOGIN_BODY = body_doc(
    {
        kind: object_schema({"csrf_token": STR, "name": STR, "password": STR})
        for kind in ("application/x-www-form-urlencoded", "multipart/form-data")
    }
)


@router.post(
    "/login",
    openapi_extra=LOGIN_BODY,
    summary="Log in with a password (form post)",
    responses={
        200: {"description": "Logged in (Accept: application/json): name and CSRF token"},
        303: {"description": "Logged in: to the form's next page, or /; a wrong password: back to /login"},
        400: error_doc("The form cannot be read"),
        401: error_doc("Wrong name or password"),
        403: error_doc("The form's CSRF token is missing or wrong"),
    },
)
async def login(request: Request, ctx: Ctx) -> Response:
    """Checks the form's CSRF token, then the password; sets the session cookie."""
    form = await read_form(request)
    nonce = request.cookies.get(PRELOGIN_COOKIE, "")
    if not nonce or not verify_signature(ctx.secret, str(form.get("csrf_token") or ""), "login", nonce):
        raise Forbidden("the login form's CSRF token is missing or wrong: reload /login", code="csrf_failed")
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    wants_json = "application/json" in request.headers.get("accept", "")

    def check() -> tuple[Any, str, Any]:
        with ctx.db.session() as s:
            return users.login(s, name, password, ctx.settings.session_ttl_s)

    try:
        user, token, row = await run_in_threadpool(check)
    except Unauthorized as exc:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        # a browser (it asked for HTML): the form again, saying why
        return _login_form(
            request, ctx, error=exc.message, next=str(form.get("next") or "/"), status_code=401
        )
    answer: Response = (
        JSONResponse({"name": user.name, "csrf_token": row.csrf_token})
        if wants_json
        else RedirectResponse(safe_next(form.get("next")), status_code=303)
    )
    answer.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=_secure(request, ctx),
        max_age=ctx.settings.session_ttl_s,
        path="/",
    )
    answer.delete_cookie(PRELOGIN_COOKIE)
    return answer


@router.post(
    "/logout",
    status_code=204,
    summary="End the session (needs its CSRF token)",
    responses={
        400: error_doc("The form cannot be read"),
        401: error_doc("No key and no session"),
        403: error_doc("The session's CSRF token is missing"),
    },
)
async def logout(request: Request, ctx: Ctx) -> Response:
    """The cookie's session is deleted server-side."""
    token = request.cookies.get(SESSION_COOKIE)
    sent = request.headers.get("x-csrf-token")
    is_form = request.headers.get("content-type", "").startswith(("multipart/", "application/x-www"))
    if sent is None and is_form:
        sent = str((await read_form(request)).get("csrf_token") or "")
    auth = authenticate(request, ctx, check_csrf=False)
    if auth.via == "session":
        if (
            not sent
            or auth.csrf_token is None
            or not hmac.compare_digest(sent.encode(), auth.csrf_token.encode())
        ):
            raise Forbidden("logout needs the session's CSRF token", code="csrf_failed")
        with ctx.db.session() as s:
            users.logout(s, token or "")
    answer = RedirectResponse("/login", status_code=303) if is_form else Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


@router.get(
    "/v1/session",
    summary="The logged-in session's user and CSRF token",
    responses={401: error_doc("No key and no session")},
)
def session_info(request: Request, ctx: Ctx) -> dict[str, Any]:
    """For the web app: who is logged in, and the token its state-changing calls must send."""
    auth = authenticate(request, ctx)
    return {
        "name": auth.user.name,
        "is_admin": auth.user.is_admin,
        "via": auth.via,
        "csrf_token": auth.csrf_token,
    }
