"""FastAPI routes: parse the request, hand it to the transcription flow, answer.

OpenAI-compatible ``POST /v1/audio/transcriptions`` (also ``stream=true``) and
``/translations`` (multipart), ``GET /health``, ``/ready``, ``/v1/models``, ``/metrics``,
the OpenAPI docs at ``/docs`` and a small page at ``/``. Every error body is
``{"error": {"code", "message", ...}}`` with a stable code; every response carries
``X-Request-ID`` (:mod:`.middleware`). The flow itself is in :mod:`.transcription`.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures at
# definition time, and the routes are closures over create_app's locals.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import __version__
from ..engines.base import Transcriber
from ..models import ResolvedModel
from ..provenance import build_info
from .asking import asked_from_form
from .auth import OPEN_PATHS
from .errors import ERROR_RESPONSES, add_error_handlers
from .metrics import Metrics
from .middleware import MULTIPART_SLACK, RequestBoundary
from .page import PAGE_PATHS, mount_page
from .schemas import (
    Build,
    Health,
    ModelList,
    Readiness,
    ResponseFormat,
    TranscriptionJSON,
    VerboseTranscriptionJSON,
    document_form_fields,
)
from .settings import ServerSettings
from .state import ServerState
from .transcription import require_ready, transcribe_upload

__all__ = ["ServerState", "create_app"]

BEAM_DOC = "twi-asr extension: beam width for this request (default: the server's --beam-size)."
STREAM_DOC = (
    "Answer with server-sent events: transcript.text.delta as each piece of the audio is "
    "transcribed, then transcript.text.done (OpenAI's event shapes)."
)
INCLUDE_DOC = "'logprobs' adds each token's log-probability to json responses and stream events."
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
# OpenAPI 3.0's spelling of a file part next to 3.1's contentMediaType, so generators (schemathesis,
# openapi-generator) send bytes, not text.
BINARY = {"format": "binary"}


def is_open(path: str) -> bool:
    """Paths served without the API key: probes, the API description and the page (no data)."""
    return (
        path in OPEN_PATHS
        or path in DOCS_PATHS
        or path == "/"
        or any(path.startswith(p + "/") for p in PAGE_PATHS if p != "/")
    )


def create_app(
    settings: ServerSettings | None = None,
    *,
    transcriber: Transcriber | None = None,
    resolved: ResolvedModel | None = None,
) -> FastAPI:
    """Build the app. Pass ``transcriber`` to serve an already loaded engine (tests, embedding),
    or ``resolved`` to load a model already found on disk (``twi-asr serve`` resolves first, so a
    missing model fails the command at once instead of a server that never gets ready)."""
    import asyncio

    settings = settings or ServerSettings()
    metrics = Metrics.create()
    state = ServerState(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader: asyncio.Task[None] | None = None
        if transcriber is not None:
            state.attach(transcriber, resolved)
        else:
            loader = asyncio.create_task(state.load(resolved))
        yield
        if loader is not None and not loader.done():
            loader.cancel()
        await state.close()

    app = FastAPI(
        title="twi-asr",
        version=__version__,
        summary="Whisper speech recognition over HTTP: OpenAI-compatible transcriptions, Twi first.",
        lifespan=lifespan,
        responses={},
    )
    app.state.twi = state
    app.add_middleware(
        RequestBoundary,
        max_body_bytes=int(settings.max_upload_mb * 1024 * 1024) + MULTIPART_SLACK,
        limit_mb=settings.max_upload_mb,
        api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
        is_open=is_open,
        metrics=metrics,
    )
    add_error_handlers(app)
    _add_operations(app, state)
    _add_audio_routes(app, state)
    mount_page(app)
    build_openapi = app.openapi
    app.openapi = lambda: app.openapi_schema or document_form_fields(build_openapi())  # type: ignore[method-assign]
    return app


def _add_operations(app: FastAPI, state: ServerState) -> None:
    settings, metrics = state.settings, state.metrics

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        """Alive: the process answers (even while a batch runs or the model loads), and what it runs."""
        card = state.card
        return Health(
            version=__version__,
            build=Build(**build_info().to_dict()),
            model=card.id if card else None,
            weights_hash=card.weights_hash if card else None,
        )

    @app.get(
        "/ready",
        response_model=Readiness,
        tags=["operations"],
        responses={503: {"model": Readiness, "description": "Loading, saturated or failed"}},
    )
    async def ready() -> JSONResponse:
        """200 when the model is loaded and the queue has room; 503 while loading or saturated."""
        if state.error:
            body = Readiness(status="error", detail=state.error)
        elif state.batcher is None:
            body = Readiness(status="loading", detail=f"loading model {settings.model}")
        elif state.batcher.saturated:
            body = Readiness(status="saturated", queue_depth=state.batcher.depth)
        else:
            return JSONResponse(Readiness(status="ready", queue_depth=state.batcher.depth).model_dump())
        headers = {"Retry-After": "5"} if body.status != "error" else {}
        return JSONResponse(body.model_dump(), status_code=503, headers=headers)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_route() -> Response:
        """Prometheus text format."""
        if state.batcher is not None:
            metrics.queue_depth.set(state.batcher.depth)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get(
        "/v1/models",
        response_model=ModelList,
        tags=["models"],
        dependencies=[Depends(documented_auth)],
        responses=ERROR_RESPONSES,
    )
    async def models() -> ModelList:
        """The loaded model: id, source, engine, weights hash and package version."""
        require_ready(state)
        assert state.card is not None
        return ModelList(data=[state.card])


def _add_audio_routes(app: FastAPI, state: ServerState) -> None:
    form_docs = {
        "file": "The audio file: wav, flac, ogg, opus, mp3, m4a, webm, mp4 (audio track)...",
        "model": "Accepted for OpenAI compatibility; the server serves the model it was started with.",
        "language": "ISO code, 'auto', or tw/twi/ak/akan for the checkpoint's own default language.",
    }
    text_formats: dict[str, dict[str, Any]] = {"text/plain": {}, "text/vtt": {}}  # text, srt; vtt
    ok_content: dict[int | str, dict[str, Any]] = {
        200: {
            "content": {
                "application/json": {"schema": VerboseTranscriptionJSON.model_json_schema()},
                **text_formats,
                "text/event-stream": {"description": STREAM_DOC},
            }
        },
        **ERROR_RESPONSES,
    }

    @app.post(
        "/v1/audio/transcriptions",
        tags=["audio"],
        dependencies=[Depends(documented_auth)],
        responses=ok_content,
        response_model=TranscriptionJSON,
    )
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile, File(description=form_docs["file"], json_schema_extra=BINARY)],
        model: Annotated[str, Form(description=form_docs["model"])] = "whisper-1",
        language: Annotated[str | None, Form(description=form_docs["language"])] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[
            list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
        ] = None,
        beam_size: Annotated[int | None, Form(ge=1, le=20, description=BEAM_DOC)] = None,
        stream: Annotated[bool, Form(description=STREAM_DOC)] = False,
        include: Annotated[list[str] | None, Form(alias="include[]", description=INCLUDE_DOC)] = None,
    ) -> Response:
        """Transcribe an upload (OpenAI ``audio.transcriptions.create`` compatible, ``stream`` too)."""
        asked = asked_from_form(
            "transcribe", default_beam=state.settings.beam_size, language=language, prompt=prompt,
            response_format=response_format, temperature=temperature,
            granularities=list(timestamp_granularities or []), beam_size=beam_size, stream=stream,
            include=list(include or []),
        )  # fmt: skip
        return await transcribe_upload(state, request, file, asked)

    @app.post(
        "/v1/audio/translations",
        tags=["audio"],
        dependencies=[Depends(documented_auth)],
        responses={200: {"content": text_formats}, **ERROR_RESPONSES},
        response_model=TranscriptionJSON,
    )
    async def translations(
        request: Request,
        file: Annotated[UploadFile, File(description=form_docs["file"], json_schema_extra=BINARY)],
        model: Annotated[str, Form(description=form_docs["model"])] = "whisper-1",
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        beam_size: Annotated[int | None, Form(ge=1, le=20, description=BEAM_DOC)] = None,
    ) -> Response:
        """Translate speech to English text (task translate), same shape as transcriptions."""
        asked = asked_from_form(
            "translate", default_beam=state.settings.beam_size, language=None, prompt=prompt,
            response_format=response_format, temperature=temperature, granularities=[],
            beam_size=beam_size, stream=False, include=[],
        )  # fmt: skip
        return await transcribe_upload(state, request, file, asked)


_bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with TWI_ASR_API_KEY.")


def documented_auth(_creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Declares the bearer scheme in /docs; the request middleware enforces it."""
