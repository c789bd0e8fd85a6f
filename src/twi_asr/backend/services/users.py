"""Users, their API keys and their web sessions.

Every function takes an open SQLAlchemy session (one unit of work, owned by
the caller) and raises :mod:`twi_asr.backend.errors` on a rule broken. A key
or session token is returned in clear exactly once, when it is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..db.models import ApiKey, User, WebSession, utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ..security import hash_password, hash_token, new_api_key, new_token, verify_password

__all__ = [
    "NewKey",
    "authenticate_key",
    "change_password",
    "create_key",
    "create_user",
    "get_user",
    "list_keys",
    "list_users",
    "login",
    "logout",
    "revoke_key",
    "session_user",
    "update_user",
]

_NAME = re.compile(r"^[\w][\w.@+-]{0,99}$", re.UNICODE)
MAX_QUOTA = 2**31 - 1  # a quota is stored as a 32-bit integer (jobs) or a float (minutes)
LAST_USED_EVERY = timedelta(seconds=60)  # write last_used_at at most this often per key


@dataclass(frozen=True)
class NewKey:
    """A key just made: the row, and the key in clear (shown once, never stored)."""

    row: ApiKey
    api_key: str


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput(
            f"invalid user name {name!r}: use 1-100 letters, digits and . _ @ + - (first a letter or digit)",
            code="invalid_name",
            param="name",
        )
    return name


def _check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidInput(
            "the password must have at least 8 characters", code="weak_password", param="password"
        )
    return password


def _flag(value: object, field: str) -> bool:
    """A JSON true or false; anything else is refused (``"false"`` must not make an admin)."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", param=field)
    return value


def get_user(s: Any, name: str) -> User:
    """The user called ``name``, or NotFound."""
    from sqlalchemy import select

    user = s.scalars(select(User).where(User.name == name)).first() if "\x00" not in name else None
    if user is None:
        raise NotFound(f"no user named {name!r}", code="user_not_found")
    return user


def create_user(
    s: Any,
    name: str,
    *,
    admin: bool = False,
    password: str | None = None,
    max_concurrent_jobs: int | None = None,
    audio_minutes_per_day: float | None = None,
    key_name: str = "default",
) -> tuple[User, NewKey]:
    """A new user with a first API key; Conflict when the name is taken."""
    from sqlalchemy import select

    name = _check_name(name)
    _flag(admin, "admin")
    if s.scalars(select(User.id).where(User.name == name)).first() is not None:
        raise Conflict(f"a user named {name!r} already exists", code="user_exists", param="name")
    user = User(
        name=name,
        is_admin=admin,
        password_hash=hash_password(_check_password(password)) if password is not None else None,
    )
    quotas = {"max_concurrent_jobs": max_concurrent_jobs, "audio_minutes_per_day": audio_minutes_per_day}
    update_user(s, user, quotas)  # checked as a PATCH is ("many" or 0 was stored as given)
    s.add(user)
    s.flush()
    return user, create_key(s, user, key_name)


def update_user(s: Any, user: User, changes: dict[str, Any]) -> User:
    """Apply admin changes: admin, disabled, password, quotas (None restores the default)."""
    allowed = {"admin", "disabled", "password", "max_concurrent_jobs", "audio_minutes_per_day"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", code="invalid_field")
    if "admin" in changes:
        user.is_admin = _flag(changes["admin"], "admin")
    if "disabled" in changes:
        user.disabled = _flag(changes["disabled"], "disabled")
    if changes.get("password") is not None:
        user.password_hash = hash_password(_check_password(changes["password"]))
    for field in ("max_concurrent_jobs", "audio_minutes_per_day"):
        if field in changes:
            value = changes[field]
            if field == "max_concurrent_jobs" and isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON has one number type: 3.0 is the integer 3
            kinds = int if field == "max_concurrent_jobs" else (int, float)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value <= MAX_QUOTA
            ):
                raise InvalidInput(
                    f"{field} must be a number above 0 and at most {MAX_QUOTA}, or null", param=field
                )
            setattr(user, field, value)
    return user


def list_users(s: Any) -> list[User]:
    """Every user, oldest first."""
    from sqlalchemy import select

    return list(s.scalars(select(User).order_by(User.created_at, User.name)))


def create_key(s: Any, user: User, name: str = "default") -> NewKey:
    """Another API key for ``user`` (a user may hold several)."""
    key, prefix, digest = new_api_key()
    label = "".join(c for c in name if c.isprintable())[:100]  # a label: no control characters (NUL)
    row = ApiKey(user_id=user.id, name=label or "default", prefix=prefix, key_hash=digest)
    s.add(row)
    s.flush()
    return NewKey(row, key)


def list_keys(s: Any, user: User) -> list[ApiKey]:
    """The user's keys, newest first (revoked ones included, marked)."""
    from sqlalchemy import select

    return list(s.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())))


def revoke_key(s: Any, user: User, key_id: str) -> ApiKey:
    """Revoke one of the user's keys; a key of someone else is NotFound."""
    row = s.get(ApiKey, key_id) if "\x00" not in key_id else None  # NUL: no such key (nor column)
    if row is None or row.user_id != user.id:
        raise NotFound(f"no API key {key_id!r}", code="key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def authenticate_key(s: Any, key: str) -> User:
    """The user a bearer key belongs to; Unauthorized when wrong, revoked or the user is disabled."""
    from sqlalchemy import select

    row = s.scalars(select(ApiKey).where(ApiKey.key_hash == hash_token(key))).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("the API key is wrong or revoked", code="invalid_api_key")
    user = s.get(User, row.user_id)
    if user is None or user.disabled:
        raise Unauthorized("this user is disabled", code="user_disabled")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        row.last_used_at = now
    return user


def login(s: Any, name: str, password: str, ttl_s: int) -> tuple[User, str, WebSession]:
    """Check a password; a new session (user, cookie token, row). Unauthorized says nothing more."""
    from sqlalchemy import select

    user = s.scalars(select(User).where(User.name == (name or "").strip())).first()
    ok = verify_password(user.password_hash if user else None, password or "")
    if user is None or not ok or user.disabled:
        raise Unauthorized("wrong name or password", code="invalid_login")
    token = new_token()
    row = WebSession(
        user_id=user.id,
        token_hash=hash_token(token),
        csrf_token=new_token(),
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    s.add(row)
    s.flush()
    return user, token, row


def session_user(s: Any, token: str) -> tuple[User, WebSession]:
    """The user and session of a cookie token; Unauthorized when unknown or expired."""
    from sqlalchemy import select

    row = s.scalars(select(WebSession).where(WebSession.token_hash == hash_token(token))).first()
    if row is None or row.expires_at <= utcnow():
        raise Unauthorized("the session has expired: log in again", code="session_expired")
    user = s.get(User, row.user_id)
    if user is None or user.disabled:
        raise Unauthorized("this user is disabled", code="user_disabled")
    return user, row


def logout(s: Any, token: str) -> None:
    """End the session of a cookie token (no error if it is already gone)."""
    from sqlalchemy import delete

    s.execute(delete(WebSession).where(WebSession.token_hash == hash_token(token)))


def change_password(s: Any, user: User, current: object, new: object, *, keep_token: str | None) -> int:
    """Set a new password after checking the current one; ends the user's other sessions (how many).

    A user without a password yet (made with a key only) cannot set one here:
    an admin gives the first one, so a leaked key cannot take over the login.
    """
    from sqlalchemy import delete

    if not isinstance(current, str) or not verify_password(user.password_hash, current):
        raise Forbidden("the current password is wrong", code="wrong_password")
    user = s.merge(user)
    user.password_hash = hash_password(_check_password(new))
    q = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_token:
        q = q.where(WebSession.token_hash != hash_token(keep_token))
    return int(s.execute(q).rowcount or 0)
