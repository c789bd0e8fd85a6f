"""The backend's errors: each has an HTTP status and a stable machine code.

Services raise them; the API layer turns any of them into the one error body
``{"error": {"code", "message", "type", "param", "request_id"}}`` (the shape
8001 uses too), so a client in any language handles both servers alike.
"""

from __future__ import annotations

from ..errors import TwiAsrError

__all__ = [
    "BackendError",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "QuotaExceeded",
    "StorageUnavailable",
    "TooLarge",
    "Unauthorized",
    "UnsupportedType",
]


class BackendError(TwiAsrError):
    """Base: an HTTP status, a stable code, a message saying what to do, optional headers."""

    status = 500
    code = "internal_error"
    kind = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.param = param
        self.headers = headers or {}


class InvalidInput(BackendError):
    """A malformed body, a bad field value or an unknown option (400)."""

    status, code, kind = 400, "invalid_request", "invalid_request_error"


class Unauthorized(BackendError):
    """No credentials, or a wrong, revoked or expired key or session (401)."""

    status, code, kind = 401, "unauthorized", "authentication_error"


class Forbidden(BackendError):
    """Authenticated, but not allowed: an admin route, or a CSRF check that failed (403)."""

    status, code, kind = 403, "forbidden", "permission_error"


class NotFound(BackendError):
    """No such resource *for this user*: another user's job is a 404 too (never a 403)."""

    status, code, kind = 404, "not_found", "invalid_request_error"


class Conflict(BackendError):
    """The resource is not in a state that allows this (a transcript of a job not done; 409)."""

    status, code, kind = 409, "conflict", "invalid_request_error"


class TooLarge(BackendError):
    """An upload over the size limit (413)."""

    status, code, kind = 413, "upload_too_large", "invalid_request_error"


class UnsupportedType(BackendError):
    """A file type that is not audio or video (415)."""

    status, code, kind = 415, "unsupported_media_type", "invalid_request_error"


class QuotaExceeded(BackendError):
    """Over a per-user quota (429, with Retry-After)."""

    status, code, kind = 429, "quota_exceeded", "rate_limit_error"

    def __init__(self, message: str, *, code: str, retry_after_s: int) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, int(retry_after_s)))})
        self.retry_after_s = retry_after_s


class StorageUnavailable(BackendError):
    """Object storage failed or cannot be reached (503): nothing was recorded, retry later."""

    status, code, kind = 503, "storage_unavailable", "server_error"

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})  # type: ignore[arg-type]
        super().__init__(message, **kw)  # type: ignore[arg-type]


class DatabaseUnavailable(BackendError):
    """The database cannot be reached (503): retry later."""

    status, code, kind = 503, "database_unavailable", "server_error"

    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})  # type: ignore[arg-type]
        super().__init__(message, **kw)  # type: ignore[arg-type]
