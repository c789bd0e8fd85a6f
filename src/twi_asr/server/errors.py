"""HTTP errors of the server: one exception with a status and a stable code, one body shape.

Every error body is ``{"error": {"code", "message", "type", "param", "request_id"}}``, the
OpenAI shape plus the request id, whichever layer refused the request (middleware, route,
admission, batcher).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .logs import request_id_var
from .schemas import ErrorBody

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "An invalid option, or audio shorter than 0.1 s",
        401: "Missing or wrong API key",
        413: "Upload or audio duration over the server's limit",
        415: "Not audio, or a format that cannot be decoded",
        422: "Missing or invalid form fields, or empty audio",
        503: "Model still loading, or the server holds as much work as it may (see Retry-After)",
        504: "The request did not finish within the server's timeout",
    }.items()
}


class ApiError(Exception):
    """An error with its HTTP status, stable code and optional headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.param, self.kind = headers or {}, param, kind

    def body(self) -> dict[str, Any]:
        """The JSON body (also the ``error`` of a streamed error event)."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "request_id": request_id_var.get(),
            }
        }

    def response(self) -> JSONResponse:
        """The HTTP response for this error."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def busy(message: str, retry_after: int, code: str = "queue_full") -> ApiError:
    """503 with Retry-After: the client should come back later."""
    return ApiError(503, code, message, headers={"Retry-After": str(retry_after)}, kind="server_error")


def upload_too_large(size_mb: float | None, limit_mb: float) -> ApiError:
    """413 for an upload over ``TWI_ASR_MAX_UPLOAD_MB`` (size known from Content-Length, or not)."""
    said = f"the upload is {size_mb:.1f} MB" if size_mb is not None else "the upload is too large"
    return ApiError(
        413,
        "upload_too_large",
        f"{said}; this server accepts up to {limit_mb:g} MB (TWI_ASR_MAX_UPLOAD_MB)",
    )


def add_error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own included, answers in the one body shape (:class:`ApiError`)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        param = ".".join(loc) or None
        missing = first.get("type") == "missing"
        message = f"missing required field {param!r}" if missing else f"{param}: {first.get('msg')}"
        return ApiError(422, "missing_field" if missing else "invalid_field", message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail)).response()
