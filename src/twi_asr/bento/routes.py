"""The OpenAI-compatible routes of the BentoML service, as a FastAPI app BentoML mounts at ``/v1``.

A thin API with the same form fields, checks and responses as ``twi-asr serve`` (the form is
parsed by :func:`twi_asr.server.asking.asked_from_form`, uploads decoded by
:func:`twi_asr.server.uploads.prepare`, answers shaped by :func:`twi_asr.server.responses.shape`),
rather than the 8001 app itself mounted: that app schedules the engine with its own batcher, and
here BentoML's adaptive batching must. Its dispatcher only sits in front of a ``@bentoml.api``
endpoint, so each route decodes the upload and calls the service's batchable
``transcribe_batch`` through the service's own client (``self.to_async``: in process, over ASGI).

Not offered here: ``stream=true`` (400; BentoML's batchable APIs answer whole batches). The
request boundary (body limit before a byte is read, API key, request id, log line) is 8001's.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from ..server.admission import Admission, Ticket
from ..server.asking import Asked, asked_from_form
from ..server.errors import ApiError, add_error_handlers
from ..server.metrics import Metrics
from ..server.middleware import MULTIPART_SLACK, RequestBoundary
from ..server.responses import shape
from ..server.schemas import ModelList, ResponseFormat
from ..server.settings import ServerSettings
from ..server.transcription import admit, check_size
from ..server.uploads import prepare
from ..types import Transcript
from .wire import Clip


def current_service() -> Any:
    """The running service instance (BentoML sets it when the worker starts)."""
    import bentoml

    return bentoml.get_current_service()


INTERNAL_TRIES = 3
"""Tries of the in-process call to ``transcribe_batch`` when its connection drops (see below)."""


async def call_engine(svc: Any, clips: list[Clip]) -> list[dict[str, Any]]:
    """``transcribe_batch`` through the service's own client, its failures as HTTP errors.

    Under load BentoML's in-process client (aiohttp over an ASGI connector) sometimes finds
    its kept-alive connection closed ("Server disconnected": 3 of 32 requests at 8 clients in
    bench/server_bento.py, nothing logged by the API itself). Transcribing has no side
    effects, so such a call is tried again; BentoML's own 503 (its dispatcher overloaded)
    stays a 503 with Retry-After.
    """
    from aiohttp import ClientConnectionError
    from bentoml.exceptions import BentoMLException

    for attempt in range(1, INTERNAL_TRIES + 1):
        try:
            result: list[dict[str, Any]] = await svc.to_async.transcribe_batch(clips=clips)
            return result
        except ClientConnectionError as exc:
            if attempt == INTERNAL_TRIES:
                raise ApiError(503, "engine_unreachable", f"transcribe_batch: {exc}", kind="server_error",
                               headers={"Retry-After": "1"}) from exc  # fmt: skip
        except BentoMLException as exc:
            status = int(getattr(exc.error_code, "value", 500))
            if status == 503:
                retry = {"Retry-After": "1"}
                raise ApiError(503, "busy", str(exc), kind="server_error", headers=retry) from exc
            raise ApiError(500, "engine_error", f"transcribe_batch: {exc}", kind="server_error") from exc
    raise AssertionError("unreachable")


def create_openai_app(settings: ServerSettings) -> FastAPI:
    """The ``/v1`` routes: ``audio/transcriptions``, ``audio/translations`` and ``models``."""
    app = FastAPI(title="twi-asr (BentoML)", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = Metrics.create()
    app.add_middleware(
        RequestBoundary,
        max_body_bytes=int(settings.max_upload_mb * 1024 * 1024) + MULTIPART_SLACK,
        limit_mb=settings.max_upload_mb,
        api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
        is_open=lambda _path: False,
        metrics=metrics,
    )
    add_error_handlers(app)
    decoders = threading.BoundedSemaphore(settings.decode_workers)
    # Memory stays bounded as on 8001: every upload reserves its duration against
    # TWI_ASR_MAX_QUEUED_AUDIO_S while its audio is held (decoded, in BentoML's queue, running).
    admission = Admission(settings.max_queued_audio_s, metrics, retry_after=lambda: 5)
    beam = settings.beam_size

    async def answer(svc: Any, upload: UploadFile, asked: Asked) -> Response:
        if asked.stream:
            raise ApiError(
                400,
                "invalid_option",
                "stream=true is not offered by the BentoML service (its batchable API answers whole "
                "batches); use twi-asr serve for streamed answers",
                param="stream",
            )
        name = upload.filename or "upload"
        ticket = await admit(upload, check_size(upload, settings), settings, admission)
        try:
            return await transcribe(svc, upload, name, asked, ticket)
        finally:
            ticket.release()

    async def transcribe(svc: Any, upload: UploadFile, name: str, asked: Asked, ticket: Ticket) -> Response:
        def decode() -> Any:
            with decoders:
                return prepare(
                    upload.file,
                    name,
                    max_seconds=settings.max_audio_s,
                    min_seconds=settings.min_audio_s,
                    split=svc.split_long_audio,
                    cancelled=threading.Event(),
                    metrics=metrics,
                )

        prepared = await asyncio.to_thread(decode)
        ticket.resize(prepared.duration)
        clips = [Clip.of(np.asarray(a), asked.options) for a in prepared.arrays()]
        dicts = await call_engine(svc, clips) if clips else []
        parts = [Transcript.from_dict(d) for d in dicts]
        card = svc.card
        result = prepared.assemble(parts, model=card.id, engine=card.engine)
        return shape(
            result,
            asked.response_format,
            task=asked.task,
            words=asked.words,
            logprobs=asked.logprobs,
            warnings=prepared.audio.warnings,
        )

    @app.post("/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File()],
        svc: Annotated[Any, Depends(current_service)],
        model: Annotated[str, Form()] = "whisper-1",
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[
            list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
        ] = None,
        beam_size: Annotated[int | None, Form(ge=1, le=20)] = None,
        stream: Annotated[bool, Form()] = False,
        include: Annotated[list[str] | None, Form(alias="include[]")] = None,
    ) -> Response:
        """Transcribe an upload (OpenAI ``audio.transcriptions.create`` compatible)."""
        asked = asked_from_form(
            "transcribe", default_beam=beam, language=language, prompt=prompt,
            response_format=response_format, temperature=temperature,
            granularities=list(timestamp_granularities or []), beam_size=beam_size, stream=stream,
            include=list(include or []),
        )  # fmt: skip
        return await answer(svc, file, asked)

    @app.post("/audio/translations")
    async def translations(
        request: Request,
        file: Annotated[UploadFile, File()],
        svc: Annotated[Any, Depends(current_service)],
        model: Annotated[str, Form()] = "whisper-1",
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        beam_size: Annotated[int | None, Form(ge=1, le=20)] = None,
    ) -> Response:
        """Translate speech to English text (task translate), same shape as transcriptions."""
        asked = asked_from_form(
            "translate", default_beam=beam, language=None, prompt=prompt,
            response_format=response_format, temperature=temperature, granularities=[],
            beam_size=beam_size, stream=False, include=[],
        )  # fmt: skip
        return await answer(svc, file, asked)

    @app.get("/models", response_model=ModelList)
    async def models(svc: Annotated[Any, Depends(current_service)]) -> ModelList:
        """The loaded model, as ``twi-asr serve`` describes it."""
        return ModelList(data=[svc.card])

    return app


__all__ = ["create_openai_app", "current_service"]
