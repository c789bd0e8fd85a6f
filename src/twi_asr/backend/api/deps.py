"""FastAPI dependencies: the app context, and the current user (API key, or session + CSRF).

A bearer key authenticates any route. A session cookie does too, but a
request that changes state with a cookie must also carry the session's CSRF
token (``X-CSRF-Token`` header, or a ``csrf_token`` form field checked by the
form route itself), so another site cannot make a logged-in browser post.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..db.models import User
from ..errors import Forbidden, Unauthorized
from ..services import users
from .context import AppContext

__all__ = ["SESSION_COOKIE", "Auth", "CurrentAdmin", "CurrentAuth", "CurrentUser", "Ctx", "context"]

SESSION_COOKIE = "twi_asr_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def context(request: Request) -> AppContext:
    """The process's :class:`AppContext`."""
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(context)]


@dataclass(frozen=True)
class Auth:
    """Who is calling, and how (``key`` or ``session``; the session's CSRF token when a session)."""

    user: User
    via: str
    csrf_token: str | None = None


def authenticate(request: Request, ctx: AppContext, *, check_csrf: bool = True) -> Auth:
    """The caller from ``Authorization: Bearer`` or the session cookie; 401 without either."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized(
                "send the key as 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with ctx.db.session() as s:
            user = users.authenticate_key(s, key.strip())
        return Auth(user, "key")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with ctx.db.session() as s:
            user, row = users.session_user(s, cookie)
        if check_csrf and request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None or not _same(sent, row.csrf_token):
                raise Forbidden(
                    "this request came with a session cookie but without its CSRF token (X-CSRF-Token)",
                    code="csrf_failed",
                )
        return Auth(user, "session", row.csrf_token)
    raise Unauthorized(
        "no API key: send 'Authorization: Bearer <key>' (twi-asr backend users create NAME makes one)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def current_auth(request: Request, ctx: Ctx) -> Auth:
    """Dependency: the authenticated caller."""
    return authenticate(request, ctx)


def current_user(auth: Annotated[Auth, Depends(current_auth)]) -> User:
    """Dependency: the authenticated user."""
    return auth.user


def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """Dependency: the authenticated user, who must be an admin (403 otherwise)."""
    if not user.is_admin:
        raise Forbidden("this route is for admins", code="admin_required")
    return user


CurrentAuth = Annotated[Auth, Depends(current_auth)]
CurrentUser = Annotated[User, Depends(current_user)]
CurrentAdmin = Annotated[User, Depends(current_admin)]
