"""One transcription request, from upload to answer, with memory bounded at every step.

1. The header's duration: over ``max_audio_s`` is 413 at once, before decoding.
2. Admission: the duration is reserved against ``max_queued_audio_s``; past it, 503 +
   Retry-After at once.
3. Decoding (and cutting long audio on silence) in the bounded decode pool, straight from
   the spooled upload; a client that has gone by then costs no decode.
4. The pieces go to the batcher as one job; the answer is a response in the asked format,
   or server-sent events as the pieces finish.
5. A client that disconnects, or a request past its timeout, drops its queued pieces; the
   reservation is released however the request ends.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import Request, UploadFile
from fastapi.responses import Response

from ..errors import InputError, TwiAsrError
from ..types import Transcript
from .admission import Admission, Ticket
from .asking import Asked
from .batching import Batcher, Job, QueueFullError
from .errors import ApiError, busy, upload_too_large
from .responses import shape
from .state import ServerState
from .streaming import EventStream, transcript_events
from .uploads import ClientGone, prepare, too_long

CLIENT_GONE = 499
MIN_BYTES_PER_SECOND = 500
"""No codec an upload may use stores a second of speech in less (Opus' floor is 6 kb/s, AMR-NB's
4.75 kb/s): an upload's size bounds its duration when its header gives none."""
"""Logged status of a request whose client disconnected (nginx's convention)."""


def require_ready(state: ServerState) -> Batcher:
    """The batcher, or 503 not_ready while the model loads (or failed to)."""
    if state.batcher is None:
        detail = state.error or "the model is still loading"
        raise ApiError(503, "not_ready", detail, headers={"Retry-After": "5"}, kind="server_error")
    return state.batcher


def error_of(exc: BaseException) -> ApiError:
    """The HTTP error for a failure after admission (the engine's, or a shutdown's)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QueueFullError):
        return busy(exc.message, exc.retry_after, exc.code)
    if isinstance(exc, InputError):
        return ApiError(422, exc.code, exc.message)
    if isinstance(exc, TwiAsrError):
        return ApiError(500, exc.code, exc.message, kind="server_error")
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}", kind="server_error")


async def transcribe_upload(
    state: ServerState, request: Request, upload: UploadFile, asked: Asked
) -> Response:
    """Answer one ``/v1/audio/transcriptions`` or ``/translations`` request."""
    batcher = require_ready(state)
    settings = state.settings
    name = upload.filename or "upload"
    size = check_size(upload, settings)
    gone: asyncio.Future[None] = asyncio.ensure_future(_disconnect(request))
    ticket = None
    handed_off = False
    try:
        ticket = await admit(upload, size, settings, state.admission)

        cancelled = threading.Event()
        decoding = asyncio.get_running_loop().run_in_executor(
            state.decoders,
            lambda: prepare(
                upload.file,
                name,
                max_seconds=settings.max_audio_s,
                min_seconds=settings.min_audio_s,
                split=state.split_long_audio,
                cancelled=cancelled,
                metrics=state.metrics,
            ),
        )
        await asyncio.wait({decoding, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not decoding.done():
            cancelled.set()  # not decoded for nobody (unless a decoder already took it)
            decoding.add_done_callback(_consume)
            return Response(status_code=CLIENT_GONE)
        try:
            prepared = decoding.result()
        except ClientGone:
            return Response(status_code=CLIENT_GONE)
        ticket.resize(prepared.duration)
        state.metrics.audio_seconds.observe(prepared.duration)

        job = None
        if prepared.pieces:
            try:
                job = batcher.submit_job(prepared.arrays(), asked.options, bulk=prepared.bulk)
            except QueueFullError as exc:
                raise busy(exc.message, exc.retry_after) from exc
        card = state.card

        def finish(parts: list[Transcript]) -> Transcript:
            return prepared.assemble(parts, model=card.id if card else "", engine=card.engine if card else "")

        if asked.stream:
            handed_off = True
            held = ticket

            def cleanup() -> None:
                if job is not None:
                    batcher.drop(job)
                held.release()
                gone.cancel()

            events = transcript_events(
                job, prepared, gone=gone, finish=finish, logprobs=asked.logprobs, error_of=error_of
            )
            return EventStream(events, cleanup)

        parts = await _wait(job, gone, batcher, settings.request_timeout_s) if job is not None else []
        if parts is None:
            return Response(status_code=CLIENT_GONE)
        return shape(
            finish(parts),
            asked.response_format,
            task=asked.task,
            words=asked.words,
            logprobs=asked.logprobs,
            warnings=prepared.audio.warnings,
        )
    finally:
        if not handed_off:
            gone.cancel()
            if ticket is not None:
                ticket.release()


async def _wait(
    job: Job, gone: asyncio.Future[None], batcher: Batcher, timeout: float
) -> list[Transcript] | None:
    """The job's transcripts; None when the client left first (its queued pieces are dropped)."""
    result = asyncio.ensure_future(job.result())
    try:
        await asyncio.wait({result, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if result.done():
            try:
                return result.result()
            except Exception as exc:
                raise error_of(exc) from exc
        batcher.drop(job)
        if gone.done():
            return None
        raise ApiError(
            504,
            "timeout",
            f"no result within {timeout:g} s (TWI_ASR_REQUEST_TIMEOUT_S)",
            kind="server_error",
        )
    finally:
        result.cancel()


async def _disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def check_size(upload: UploadFile, settings: Any) -> int | None:
    """Step 0: an empty upload is 422, one over ``max_upload_mb`` 413 (the body limit has slack)."""
    size = _size(upload)
    if size == 0:
        name = upload.filename or "upload"
        raise ApiError(422, "empty_file", f"{name}: the uploaded file is empty", param="file")
    if size is not None and size > settings.max_upload_mb * 1024 * 1024:
        raise upload_too_large(size / 1e6, settings.max_upload_mb)
    return size


async def admit(upload: UploadFile, size: int | None, settings: Any, admission: Admission) -> Ticket:
    """Steps 1-2: the header's duration checked against ``max_audio_s``, then reserved (or 503)."""
    from ..audio import probe_duration

    estimate = await asyncio.to_thread(probe_duration, upload.file)
    if estimate is not None and estimate > settings.max_audio_s:
        raise too_long(estimate, settings.max_audio_s)
    try:
        return admission.admit(estimate if estimate is not None else _at_most(size, settings))
    except QueueFullError as exc:
        raise busy(exc.message, exc.retry_after) from exc


def _at_most(size: int | None, settings: Any) -> float:
    """The reservation for an upload whose header gives no duration (raw streams, not audio at all):
    the most its size can hold, at most the per-request limit; corrected once it is decoded."""
    if size is None:
        return float(settings.max_audio_s)
    return min(float(settings.max_audio_s), max(1.0, size / MIN_BYTES_PER_SECOND))


def _size(upload: UploadFile) -> int | None:
    if upload.size is not None:
        return upload.size
    file = upload.file
    here = file.tell()
    file.seek(0, 2)
    size = file.tell()
    file.seek(here)
    return size


def _consume(future: asyncio.Future[Any]) -> None:
    """Read a dropped decode's outcome so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
