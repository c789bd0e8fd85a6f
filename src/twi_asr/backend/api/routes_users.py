"""``/v1/me`` (yourself and your keys) and ``/v1/users`` (admins manage users)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from ..db.models import ApiKey, User
from ..errors import InvalidInput
from ..services import quotas, users
from ..services.views import iso
from .deps import Ctx, CurrentAdmin, CurrentUser
from .errors import ERRORS, error_doc
from .forms import BOOL, STR, body_doc, object_schema, read_json, refuse_unknown

__all__ = ["router"]

router = APIRouter(tags=["users"], responses=ERRORS)
ADMIN = {403: error_doc("Not an admin")}
_QUOTA = {"exclusiveMinimum": 0, "maximum": users.MAX_QUOTA}
_MAYBE_POSITIVE_INT = {"anyOf": [{"type": "integer", **_QUOTA}, {"type": "null"}]}
_MAYBE_POSITIVE = {"anyOf": [{"type": "number", **_QUOTA}, {"type": "null"}]}
_PASSWORD = {"anyOf": [{"type": "string", "minLength": 8}, {"type": "null"}]}
_CHANGES = {
    "admin": BOOL,
    "disabled": BOOL,
    "password": _PASSWORD,
    "max_concurrent_jobs": _MAYBE_POSITIVE_INT,
    "audio_minutes_per_day": _MAYBE_POSITIVE,
}
NEW_USER_BODY = body_doc(
    {
        "application/json": object_schema(
            {
                "name": STR | {"pattern": r"^\s*[\w][\w.@+-]{0,99}\s*$"},
                **{k: v for k, v in _CHANGES.items() if k != "disabled"},
            },
            required=("name",),
        )
    }
)
CHANGE_BODY = body_doc({"application/json": object_schema(_CHANGES, closed=True)})
KEY_BODY = body_doc(
    {"application/json": object_schema({"name": {"anyOf": [STR, {"type": "null"}]}})}, required=False
)


def user_view(u: User) -> dict[str, Any]:
    """A user as admins and the user see it (no secrets)."""
    return {
        "id": u.id,
        "name": u.name,
        "is_admin": u.is_admin,
        "disabled": u.disabled,
        "has_password": u.password_hash is not None,
        "created_at": iso(u.created_at),
        "max_concurrent_jobs": u.max_concurrent_jobs,
        "audio_minutes_per_day": u.audio_minutes_per_day,
    }


def key_view(k: ApiKey) -> dict[str, Any]:
    """A key without its secret: id, name, prefix, dates."""
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": iso(k.created_at),
        "last_used_at": iso(k.last_used_at),
        "revoked_at": iso(k.revoked_at),
    }


@router.get("/v1/me", summary="Yourself: quotas, usage, webhook secret")
def me(ctx: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Who the key or session belongs to, what it may use and uses, and the webhook signing secret."""
    with ctx.db.session() as s:
        use = quotas.usage(s, user, ctx.settings)
    return {**user_view(user), **use.as_dict(), "webhook_secret": user.webhook_secret}


PASSWORD_BODY = body_doc(
    {"application/json": object_schema({"current_password": STR, "new_password": STR | {"minLength": 8}},
                                       required=("current_password", "new_password"), closed=True)}
)  # fmt: skip


@router.post(
    "/v1/me/password",
    openapi_extra=PASSWORD_BODY,
    summary="Change your password (your other sessions end)",
    responses={403: error_doc("The current password is wrong")},
)
async def change_password(request: Request, ctx: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Needs the current password; every other session of yours is signed out."""
    from .deps import SESSION_COOKIE

    body = await read_json(request)
    refuse_unknown(body, {"current_password", "new_password"})
    with ctx.db.session() as s:
        ended = users.change_password(
            s,
            user,
            body.get("current_password"),
            body.get("new_password"),
            keep_token=request.cookies.get(SESSION_COOKIE),
        )
    return {"changed": True, "other_sessions_ended": ended}


@router.get("/v1/me/keys", summary="Your API keys")
def my_keys(ctx: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Every key you hold, revoked ones marked; never the secrets."""
    with ctx.db.session() as s:
        return {"object": "list", "data": [key_view(k) for k in users.list_keys(s, user)]}


@router.post(
    "/v1/me/keys", status_code=201, openapi_extra=KEY_BODY, summary="Make another API key (shown once)"
)
async def new_key(request: Request, ctx: Ctx, user: CurrentUser) -> JSONResponse:
    """A new key; its secret is in this answer only."""
    body = await read_json(request) if await request.body() else {}
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidInput("name must be text (a label for the key)", param="name")
    with ctx.db.session() as s:
        made = users.create_key(s, user, name or "default")
        view = key_view(made.row)
    return JSONResponse({**view, "api_key": made.api_key}, status_code=201)


@router.delete("/v1/me/keys/{key_id}", status_code=204, summary="Revoke one of your keys")
def revoke(key_id: str, ctx: Ctx, user: CurrentUser) -> Response:
    """The key stops working at once."""
    with ctx.db.session() as s:
        users.revoke_key(s, user, key_id)
    return Response(status_code=204)


@router.get("/v1/users", summary="Every user (admins)", responses=ADMIN)
def all_users(ctx: Ctx, _: CurrentAdmin) -> dict[str, Any]:
    """Users, oldest first."""
    with ctx.db.session() as s:
        return {"object": "list", "data": [user_view(u) for u in users.list_users(s)]}


@router.post(
    "/v1/users",
    status_code=201,
    openapi_extra=NEW_USER_BODY,
    summary="Create a user with a first key (admins)",
    responses=ADMIN | {409: error_doc("A user of that name exists")},
)
async def create(request: Request, ctx: Ctx, _: CurrentAdmin) -> JSONResponse:
    """``{"name", "admin"?, "password"?, "max_concurrent_jobs"?, "audio_minutes_per_day"?}``."""
    body = await read_json(request)
    if not isinstance(body.get("name"), str):
        raise InvalidInput("name is required", param="name")
    with ctx.db.session() as s:
        user, made = users.create_user(
            s,
            body["name"],
            admin=body.get("admin", False),
            password=body.get("password"),
            max_concurrent_jobs=body.get("max_concurrent_jobs"),
            audio_minutes_per_day=body.get("audio_minutes_per_day"),
        )
        view = user_view(user)
    return JSONResponse({**view, "api_key": made.api_key}, status_code=201)


@router.patch(
    "/v1/users/{name}", openapi_extra=CHANGE_BODY, summary="Change a user (admins)", responses=ADMIN
)
async def change(name: str, request: Request, ctx: Ctx, _: CurrentAdmin) -> dict[str, Any]:
    """admin, disabled, password, max_concurrent_jobs, audio_minutes_per_day."""
    body = await read_json(request)
    with ctx.db.session() as s:
        return user_view(users.update_user(s, users.get_user(s, name), body))


@router.delete("/v1/users/{name}", summary="Disable a user (admins)", responses=ADMIN)
def disable(name: str, ctx: Ctx, _: CurrentAdmin) -> dict[str, Any]:
    """The user's keys and sessions stop working; their jobs and files stay."""
    with ctx.db.session() as s:
        return user_view(users.update_user(s, users.get_user(s, name), {"disabled": True}))


@router.get("/v1/users/{name}/keys", summary="A user's API keys (admins)", responses=ADMIN)
def user_keys(name: str, ctx: Ctx, _: CurrentAdmin) -> dict[str, Any]:
    """Every key the user holds, revoked ones marked; never the secrets."""
    with ctx.db.session() as s:
        return {"object": "list", "data": [key_view(k) for k in users.list_keys(s, users.get_user(s, name))]}


@router.delete("/v1/users/{name}/keys/{key_id}", status_code=204, summary="Revoke a user's key (admins)",
               responses=ADMIN)  # fmt: skip
def revoke_user_key(name: str, key_id: str, ctx: Ctx, _: CurrentAdmin) -> Response:
    """A leaked key stops working at once; the user's other keys keep working."""
    with ctx.db.session() as s:
        users.revoke_key(s, users.get_user(s, name), key_id)
    return Response(status_code=204)


@router.get("/v1/admin/usage", summary="Audio minutes per user per UTC day (admins)", responses=ADMIN)
def usage_by_day(ctx: Ctx, _: CurrentAdmin, days: Annotated[int, Query(ge=1, le=92)] = 7) -> dict[str, Any]:
    """``{"days": [...], "data": [{"name", "quotas", "minutes": {day: minutes}}]}``, oldest day first."""
    from datetime import timedelta

    from ..db.models import utcnow

    today = utcnow().date()
    span = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    with ctx.db.session() as s:
        minutes = quotas.daily_minutes(s, days=days)
        rows = [
            {
                "name": u.name,
                "disabled": u.disabled,
                **quotas.usage(s, u, ctx.settings).as_dict(),
                "minutes": {d: minutes.get(u.id, {}).get(d, 0.0) for d in span},
            }
            for u in users.list_users(s)
        ]
    return {"object": "list", "days": span, "data": rows}


@router.get("/v1/admin/asr", summary="The ASR servers behind this backend, and whether each is ready",
            responses=ADMIN)  # fmt: skip
async def asr_servers(ctx: Ctx, _: CurrentAdmin) -> dict[str, Any]:
    """Each 8001 server's ``/ready`` (asked now, at once)."""
    from starlette.concurrency import run_in_threadpool

    return {"object": "list", "data": await run_in_threadpool(ctx.asr.servers_status)}
