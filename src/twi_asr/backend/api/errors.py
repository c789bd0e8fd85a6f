"""One error body for every failure, whichever layer refused the request.

``{"error": {"code", "message", "type", "param", "request_id"}}``: the shape
the 8001 server answers with too, so one client handles both.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BackendError
from .context import request_id_var

__all__ = ["ERRORS", "error_doc", "error_response", "install"]

log = logging.getLogger("twi_asr.backend")

_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    kind: str | None = None,
) -> JSONResponse:
    """The JSON error answer."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "type": kind or _KINDS.get(status, "server_error"),
            "param": param,
            "request_id": request_id_var.get(),
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _schema() -> dict[str, Any]:
    text, maybe = {"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]}
    error = {
        "type": "object",
        "properties": {"code": text, "message": text, "type": text, "param": maybe, "request_id": maybe},
        "required": ["code", "message", "type"],
    }
    return {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": error}, "required": ["error"]}
        }
    }


def error_doc(text: str) -> dict[str, Any]:
    """An OpenAPI response of the error body, described by ``text`` (for a route's ``responses=``)."""
    return {"description": text, "content": _schema()}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("Malformed body or invalid field"),
    401: error_doc("Missing, wrong or revoked API key or session"),
    404: error_doc("No such resource for this user"),
    503: error_doc("Database or storage unavailable (see Retry-After)"),
}


def _without_fastapi_422(app: FastAPI) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` on every route with parameters, but invalid
    parameters get the one error body with 400 here (below): drop those 422s from the schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operation in (op for ops in schema.get("paths", {}).values() for op in ops.values()):
                answer = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(answer.get("content", {})):
                    del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the one error body."""
    _without_fastapi_422(app)

    @app.exception_handler(BackendError)
    async def _backend(_: Request, exc: BackendError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return error_response(
            exc.status, exc.code, exc.message, param=exc.param, headers=exc.headers, kind=exc.kind
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header"))
        message = (
            f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
        )
        return error_response(400, "invalid_request", message, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: the server failed; see its log")
