"""The request boundary as plain ASGI: request id, body limit, per-route counts, one log line.

Plain ASGI so the body can be counted while it streams: an upload whose
``Content-Length`` is over the limit is refused before a byte is read, and a
chunked one is cut at the byte that passes the limit (413), never spooled whole.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ...asgi_body import BodyTooLarge, RequestTap, request_id
from .context import request_id_var
from .errors import error_response

__all__ = ["Boundary"]

log = logging.getLogger("twi_asr.backend")
SLACK = 1 << 20  # the multipart envelope and small fields, past the file limit
QUIET = frozenset({"/health", "/ready", "/metrics"})


class Boundary:
    """Wraps the app: every HTTP request gets an id (X-Request-ID kept or made), the limit, a count."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Any) -> None:
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes + SLACK, metrics
        self.limit_mb = max_body_bytes / (1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = request_id(headers)
        token = request_id_var.set(rid)
        t0 = time.perf_counter()
        tap = RequestTap(receive, send, request_id=rid, max_body_bytes=self.max_body_bytes)
        too_large = error_response(
            413,
            "upload_too_large",
            f"the request body is over the {self.limit_mb:g} MB limit (TWI_ASR_MAX_UPLOAD_MB); "
            "for big files use POST /v1/uploads and PUT the file to its URL",
        )
        try:
            length = headers.get("content-length")
            if length and length.isdigit() and int(length) > self.max_body_bytes:
                await too_large(scope, receive, tap.send)
                return
            with contextlib.suppress(BodyTooLarge):
                await self.app(scope, tap.receive, tap.send)
            if tap.owes_refusal():
                await too_large(scope, receive, tap.send)
        finally:
            elapsed = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route=route, status=str(tap.status)).inc()
            quiet = route in QUIET and tap.status < 400
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s -> %s in %.3f s [%s]",
                scope.get("method"),
                scope.get("path"),
                tap.status,
                elapsed,
                rid,
            )
            request_id_var.reset(token)
