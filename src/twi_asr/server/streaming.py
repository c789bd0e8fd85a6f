"""``stream=true``: server-sent events in OpenAI's shapes, one delta per finished piece.

Events are ``data: {json}`` lines: ``transcript.text.delta`` as each piece of the upload is
transcribed (in order; ``segments`` is a twi-asr extension with the piece's segments at
their times in the whole file), then ``transcript.text.done`` with the whole text and
``usage``; or one ``error`` event (``{"type": "error", "error": {code, message, ...}}``) and
the end of the stream, never a hung connection. The official ``openai`` client's
``stream=True`` iterates these unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..types import Segment, Transcript
from .batching import Job
from .errors import ApiError
from .schemas import language_name, logprobs_of, usage_of
from .uploads import Prepared, delta_text

log = logging.getLogger("twi_asr.server")


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as JSON (UTF-8, Twi letters unescaped)."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response whose ``cleanup`` runs however the stream ends."""

    def __init__(self, events: AsyncIterator[bytes], cleanup: Callable[[], None]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


def _segments_json(segments: tuple[Segment, ...], first_id: int) -> list[dict[str, Any]]:
    return [
        {"id": first_id + i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(segments)
    ]


async def transcript_events(
    job: Job | None,
    prepared: Prepared,
    *,
    gone: asyncio.Future[None],
    finish: Callable[[list[Transcript]], Transcript],
    logprobs: bool,
    error_of: Callable[[BaseException], ApiError],
) -> AsyncIterator[bytes]:
    """The events of one streamed transcription; stops quietly when the client is gone."""
    parts: list[Transcript] = []
    said = False  # whether a delta went out: the next one starts with a space
    next_id = 0
    try:
        if job is not None:
            updates = job.updates().__aiter__()
            while len(parts) < len(prepared.pieces):
                step = asyncio.ensure_future(updates.__anext__())
                await asyncio.wait({step, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    return
                index, part = step.result()
                parts.append(part)
                placed = prepared.place(index, part)
                text = delta_text(placed)
                if not text:
                    continue
                event: dict[str, Any] = {
                    "type": "transcript.text.delta",
                    "delta": f" {text}" if said else text,
                    "segments": _segments_json(placed, next_id),
                }
                if logprobs:
                    event["logprobs"] = [p.model_dump() for p in logprobs_of(part) or []]
                said, next_id = True, next_id + len(placed)
                yield sse(event)
        final = finish(parts)
        done: dict[str, Any] = {
            "type": "transcript.text.done",
            "text": final.text,
            "usage": usage_of(final).model_dump(),
            "segments": _segments_json(final.segments, 0),
            "language": final.language,
            "language_name": language_name(final.language),
            "duration": final.duration,
        }
        if logprobs:
            done["logprobs"] = [p.model_dump() for p in logprobs_of(final) or []]
        yield sse(done)
    except Exception as exc:  # an engine failure or a shutdown mid-stream: say so, then end
        error = error_of(exc)
        if error.status >= 500:
            log.warning("stream failed: %s", error.message)
        yield sse({"type": "error", **error.body()})
