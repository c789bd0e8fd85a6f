"""The request boundary, as plain ASGI: request id, upload limit, API key, metrics and the log line.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware`` because it must see the body as it
streams: an upload whose ``Content-Length`` is over the limit gets 413 before a byte of it is
read, and a chunked upload that passes the limit is cut off at that byte, not after it has
been spooled to disk. It also leaves streaming responses (server-sent events) and client
disconnects to the app untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..asgi_body import BodyTooLarge, RequestTap, request_id
from .auth import key_matches
from .errors import ApiError, upload_too_large
from .logs import request_id_var
from .metrics import Metrics

log = logging.getLogger("twi_asr.server")
MULTIPART_SLACK = 65536
"""Bytes allowed past the upload limit for the multipart envelope and the other form fields."""
PROBE_ROUTES = frozenset({"/health", "/ready", "/metrics"})
"""Routes whose successful answers are logged at DEBUG, not INFO."""


class RequestBoundary:
    """Wraps the app: every HTTP request gets an id, the limits, the key check and a log line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        limit_mb: float,
        api_key: str | None,
        is_open: Callable[[str], bool],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limit_mb = limit_mb
        self.api_key = api_key
        self.is_open = is_open
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = request_id(headers)
        token = request_id_var.set(rid)
        t0 = time.perf_counter()
        tap = RequestTap(receive, send, request_id=rid, max_body_bytes=self.max_body_bytes)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal.response()(scope, receive, tap.send)
            else:
                try:
                    await self.app(scope, tap.receive, tap.send)
                except BodyTooLarge:
                    pass
                except Exception as exc:  # answered here so it keeps its request id and is counted
                    if tap.started:
                        raise
                    log.exception("unexpected error")
                    error = ApiError(
                        500, "internal_error", f"{type(exc).__name__}: {exc}", kind="server_error"
                    )
                    await error.response()(scope, receive, tap.send)
                if tap.owes_refusal():
                    await upload_too_large(None, self.limit_mb).response()(scope, receive, tap.send)
        finally:
            self._account(scope, tap.status, time.perf_counter() - t0, rid)
            request_id_var.reset(token)

    def _refusal(self, scope: Scope, headers: Headers) -> ApiError | None:
        """413 from Content-Length alone, or 401 without the key; None lets the request in."""
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return upload_too_large(int(length) / 1e6, self.limit_mb)
        path = scope.get("path", "")
        if (
            self.api_key is not None
            and not self.is_open(path)
            and not key_matches(self.api_key, headers.get("authorization"))
        ):
            return ApiError(
                401,
                "invalid_api_key",
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
                kind="authentication_error",
            )
        return None

    def _account(self, scope: Scope, status: int, elapsed: float, rid: str) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(route=route, status=str(status)).inc()
        self.metrics.latency.labels(route=route).observe(elapsed)
        quiet = route in PROBE_ROUTES and status < 400  # a HEALTHCHECK every 10 s would drown the log
        path = scope.get("path", "")
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %d %.3fs",
            scope.get("method", "-"),
            path,
            status,
            elapsed,
            extra={"request_id": rid, "status": status, "duration_s": round(elapsed, 4), "path": path},
        )
