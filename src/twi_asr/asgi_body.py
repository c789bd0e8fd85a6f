"""One HTTP request's body limit and response tagging, in plain ASGI: shared by 8001 and 8000.

Both servers' request boundaries wrap ``receive`` and ``send`` the same way:
the body is counted while it streams and cut off (:class:`BodyTooLarge`) at
the byte that passes the limit, so a big upload is never spooled whole; the
response gets the request id; and once the body was cut off, the app's own
answer is swallowed so the boundary's 413 is the one the client sees.
"""

from __future__ import annotations

import uuid

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Send

__all__ = ["BodyTooLarge", "RequestTap", "request_id"]


def request_id(headers: Headers) -> str:
    """The caller's ``X-Request-ID`` (at most 128 characters), or a new random one."""
    return (headers.get("x-request-id") or uuid.uuid4().hex)[:128]


class BodyTooLarge(Exception):
    """Raised from ``receive`` when the body passes the limit; the boundary answers 413."""


class RequestTap:
    """The wrapped ``receive``/``send`` of one request, and what they saw (status, overflow)."""

    def __init__(self, receive: Receive, send: Send, *, request_id: str, max_body_bytes: int) -> None:
        self._receive, self._send = receive, send
        self.request_id, self.max_body_bytes = request_id, max_body_bytes
        self.status, self.started, self.overflow, self.seen = 500, False, False, 0

    async def receive(self) -> Message:
        """The app's ``receive``: counts body bytes, raises :class:`BodyTooLarge` past the limit."""
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_body_bytes:
                self.overflow = True
                raise BodyTooLarge()
        return message

    async def send(self, message: Message) -> None:
        """The app's ``send``: adds ``X-Request-ID``; drops the app's answer to a body cut off."""
        if message["type"] == "http.response.start":
            if self.overflow or self.started:
                return  # the app's answer to a body we cut off; ours is the 413
            self.started, self.status = True, message["status"]
            headers = [*message.get("headers", []), (b"x-request-id", self.request_id.encode())]
            message = {**message, "headers": headers}
        elif self.overflow and message["type"] == "http.response.body":
            return
        await self._send(message)

    def owes_refusal(self) -> bool:
        """True once: the body was cut off before any answer went out (send the 413 now)."""
        if self.overflow and not self.started:
            self.overflow = False
            return True
        return False
