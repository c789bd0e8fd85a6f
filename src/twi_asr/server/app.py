"""FastAPI routes: parse the request, hand audio to the batcher, shape the response.

OpenAI-compatible ``POST /v1/audio/transcriptions`` and ``/translations``
(multipart), ``GET /health``, ``/ready``, ``/v1/models``, ``/metrics`` and the
OpenAPI docs at ``/docs``. Every error body is ``{"error": {"code", "message",
...}}`` with a stable code; every response carries ``X-Request-ID``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures at
# definition time, and the routes are closures over create_app's locals.
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..engines.base import Transcriber
from ..errors import AudioError, EnvironmentProblem, InputError, TwiAsrError, UsageError
from ..models import ResolvedModel
from ..types import TranscribeOptions
from .auth import OPEN_PATHS, key_matches
from .batching import Batcher, QueueFullError
from .logs import request_id_var
from .metrics import Metrics
from .schemas import (
    ErrorBody,
    Health,
    ModelCard,
    ModelList,
    Readiness,
    ResponseFormat,
    TranscriptionJSON,
    VerboseTranscriptionJSON,
    verbose_from_transcript,
)
from .settings import ServerSettings

log = logging.getLogger("twi_asr.server")
BEAM_DOC = "twi-asr extension: beam width for this request (default: the server's --beam-size)."
_PROBE_ROUTES = frozenset({"/health", "/ready", "/metrics"})
"""Routes whose successful answers are logged at DEBUG, not INFO."""

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "Missing or wrong API key",
        413: "Upload or audio duration over the server's limit",
        415: "Not audio, or a format that cannot be decoded",
        422: "Missing or invalid form fields, or empty audio",
        503: "Model still loading, or the queue is full (see Retry-After)",
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


def _error_response(exc: ApiError) -> JSONResponse:
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "type": exc.kind,
            "param": exc.param,
            "request_id": request_id_var.get(),
        }
    }
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


class ServerState:
    """The loaded model and its batcher; ``None`` while loading."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.batcher: Batcher | None = None
        self.card: ModelCard | None = None
        self.error: str | None = None

    def attach(self, transcriber: Transcriber, resolved: ResolvedModel | None) -> None:
        """Put a loaded engine behind a batcher and describe it."""
        s = self.settings
        self.batcher = Batcher(
            transcriber,
            max_batch_size=s.effective_batch_size,
            max_wait_s=s.max_wait_ms / 1000.0,
            max_queue=s.max_queue,
            metrics=self.metrics,
        )
        self.batcher.start()
        self.card = ModelCard(
            id=transcriber.model_name,
            source=resolved.source if resolved else transcriber.model_name,
            format=resolved.format if resolved else transcriber.engine,
            engine=transcriber.engine,
            device=transcriber.device,
            weights_hash=resolved.weights_hash() if resolved else "unknown",
            twi_asr_version=__version__,
        )
        self.metrics.model_loaded.set(1)
        log.info("model %s loaded (%s on %s)", self.card.id, self.card.engine, self.card.device)

    async def load(self, resolved: ResolvedModel | None = None) -> None:
        """Resolve (unless done already) and load the model in a thread; /ready says 503 meanwhile."""
        from ..engines import load_transcriber
        from ..models import resolve_model

        s = self.settings
        try:
            if resolved is None:
                resolved = await asyncio.to_thread(resolve_model, s.model)
            transcriber = await asyncio.to_thread(
                load_transcriber,
                resolved,
                engine=s.engine,
                device=s.device,
                compute_type=s.compute_type,
                batch_size=s.effective_batch_size,
                long_form=s.long_form,
            )
            self.attach(transcriber, resolved)
        except TwiAsrError as exc:
            self.error = exc.message
            log.error("cannot load model %s: %s", s.model, exc.message)
        except Exception as exc:  # keep serving /health and say why /ready fails
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("cannot load model %s", s.model)


def create_app(
    settings: ServerSettings | None = None,
    *,
    transcriber: Transcriber | None = None,
    resolved: ResolvedModel | None = None,
) -> FastAPI:
    """Build the app. Pass ``transcriber`` to serve an already loaded engine (tests, embedding),
    or ``resolved`` to load a model already found on disk (``twi-asr serve`` resolves first, so a
    missing model fails the command at once instead of a server that never gets ready)."""
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
        if state.batcher is not None:
            await state.batcher.drain(settings.graceful_timeout_s)

    app = FastAPI(
        title="twi-asr",
        version=__version__,
        summary="Whisper speech recognition over HTTP: OpenAI-compatible transcriptions, Twi first.",
        lifespan=lifespan,
        responses={},
    )
    app.state.twi = state

    # ------------------------------------------------------------ middleware
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(rid[:128])
        t0 = time.perf_counter()
        try:
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.max_upload_mb * 1024 * 1024 + 65536:
                response: Response = _error_response(
                    ApiError(
                        413,
                        "upload_too_large",
                        f"the upload is {int(length) / 1e6:.1f} MB; this server accepts up to "
                        f"{settings.max_upload_mb:g} MB (TWI_ASR_MAX_UPLOAD_MB)",
                    )
                )
            elif (
                settings.api_key is not None
                and request.url.path not in OPEN_PATHS
                and not _docs(request.url.path)
                and not key_matches(settings.api_key.get_secret_value(), request.headers.get("authorization"))
            ):
                response = _error_response(
                    ApiError(
                        401,
                        "invalid_api_key",
                        "missing or wrong API key: send 'Authorization: Bearer <key>'",
                        headers={"WWW-Authenticate": "Bearer"},
                        kind="authentication_error",
                    )
                )
            else:
                try:
                    response = await call_next(request)
                except Exception as exc:  # answered here so it keeps its request id and is counted
                    log.exception("unexpected error")
                    response = _error_response(
                        ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}", kind="server_error")
                    )
        finally:
            request_id_var.reset(token)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - t0
        metrics.requests.labels(route=path, status=str(response.status_code)).inc()
        metrics.latency.labels(route=path).observe(elapsed)
        response.headers["X-Request-ID"] = rid[:128]
        # Probes (a container HEALTHCHECK every 10 s, Kubernetes, Prometheus) would drown the log.
        quiet = path in _PROBE_ROUTES and response.status_code < 400
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %d %.3fs",
            request.method,
            request.url.path,
            response.status_code,
            elapsed,
            extra={
                "request_id": rid[:128],
                "status": response.status_code,
                "duration_s": round(elapsed, 4),
                "path": request.url.path,
            },
        )
        return response

    # ----------------------------------------------------- error handlers
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        param = ".".join(loc) or None
        missing = first.get("type") == "missing"
        message = f"missing required field {param!r}" if missing else f"{param}: {first.get('msg')}"
        return _error_response(
            ApiError(422, "missing_field" if missing else "invalid_field", message, param=param)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error_response(
            ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}", kind="server_error")
        )

    # ------------------------------------------------------------- routes
    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        """Alive: the process answers (even while a batch runs or the model loads)."""
        return Health()

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
        _require_ready(state)
        assert state.card is not None
        return ModelList(data=[state.card])

    async def _transcribe(
        task: Literal["transcribe", "translate"],
        file: UploadFile,
        language: str | None,
        prompt: str | None,
        response_format: ResponseFormat,
        temperature: float,
        granularities: list[str] | None,
        beam_size: int | None = None,
    ) -> Response:
        batcher = _require_ready(state)
        data = await file.read(int(settings.max_upload_mb * 1024 * 1024) + 1)
        if len(data) > settings.max_upload_mb * 1024 * 1024:
            raise ApiError(413, "upload_too_large", f"the upload exceeds {settings.max_upload_mb:g} MB")
        words = "word" in (granularities or [])
        try:
            options = TranscribeOptions(
                language=language or None,
                task=task,
                beam_size=beam_size or settings.beam_size,
                temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature == 0 else (temperature,),
                initial_prompt=prompt or None,
                word_timestamps=words,
            )
            from ..languages import resolve_language

            resolve_language(options.language, checkpoint_default=None)
        except UsageError as exc:
            raise ApiError(400, "invalid_option", exc.message) from exc
        audio = await _decode(data, file.filename or "upload")
        if audio.duration > settings.max_audio_s:
            raise ApiError(
                413,
                "audio_too_long",
                f"the audio is {audio.duration:.0f} s; this server accepts "
                f"up to {settings.max_audio_s:g} s (TWI_ASR_MAX_AUDIO_S)",
            )
        metrics.audio_seconds.observe(audio.duration)
        try:
            result = await asyncio.wait_for(
                batcher.submit(audio.samples, options), settings.request_timeout_s
            )
        except QueueFullError as exc:
            raise ApiError(
                503, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}, kind="server_error"
            ) from exc
        except asyncio.TimeoutError:
            raise ApiError(
                504,
                "timeout",
                f"no result within {settings.request_timeout_s:g} s (TWI_ASR_REQUEST_TIMEOUT_S)",
                kind="server_error",
            ) from None
        except InputError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        return _shape(result, response_format, task, words)

    form_docs = {
        "file": "The audio file: wav, flac, ogg, opus, mp3, m4a, webm, mp4 (audio track)...",
        "model": "Accepted for OpenAI compatibility; the server serves the model it was started with.",
        "language": "ISO code, 'auto', or tw/twi/ak/akan for the checkpoint's own default language.",
    }

    @app.post(
        "/v1/audio/transcriptions",
        tags=["audio"],
        dependencies=[Depends(documented_auth)],
        responses={
            200: {
                "content": {
                    "application/json": {"schema": VerboseTranscriptionJSON.model_json_schema()},
                    "text/plain": {},
                }
            },
            **ERROR_RESPONSES,
        },
        response_model=TranscriptionJSON,
    )
    async def transcriptions(
        file: Annotated[UploadFile, File(description=form_docs["file"])],
        model: Annotated[str, Form(description=form_docs["model"])] = "whisper-1",
        language: Annotated[str | None, Form(description=form_docs["language"])] = None,
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        timestamp_granularities: Annotated[
            list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
        ] = None,
        beam_size: Annotated[int | None, Form(ge=1, le=20, description=BEAM_DOC)] = None,
    ) -> Response:
        """Transcribe an upload (OpenAI ``audio.transcriptions.create`` compatible)."""
        return await _transcribe(
            "transcribe",
            file,
            language,
            prompt,
            response_format,
            temperature,
            list(timestamp_granularities or []),
            beam_size,
        )

    @app.post(
        "/v1/audio/translations",
        tags=["audio"],
        dependencies=[Depends(documented_auth)],
        responses=ERROR_RESPONSES,
        response_model=TranscriptionJSON,
    )
    async def translations(
        file: Annotated[UploadFile, File(description=form_docs["file"])],
        model: Annotated[str, Form(description=form_docs["model"])] = "whisper-1",
        prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[ResponseFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
        beam_size: Annotated[int | None, Form(ge=1, le=20, description=BEAM_DOC)] = None,
    ) -> Response:
        """Translate speech to English text (task translate), same shape as transcriptions."""
        return await _transcribe("translate", file, None, prompt, response_format, temperature, [], beam_size)

    return app


_bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with TWI_ASR_API_KEY.")


def documented_auth(_creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Declares the bearer scheme in /docs; the request middleware enforces it."""


def _docs(path: str) -> bool:
    """The API description is public (it holds no data) so /docs works with a key set."""
    return path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def _require_ready(state: ServerState) -> Batcher:
    if state.batcher is None:
        detail = state.error or "the model is still loading"
        raise ApiError(503, "not_ready", detail, headers={"Retry-After": "5"}, kind="server_error")
    return state.batcher


async def _decode(data: bytes, name: str) -> Any:
    from ..audio import decode_audio

    if not data:
        raise ApiError(422, "empty_file", f"{name}: the uploaded file is empty", param="file")
    try:
        return await asyncio.to_thread(decode_audio, data, name=name)
    except AudioError as exc:
        status = 422 if "no audio samples" in exc.message or "zero duration" in exc.message else 415
        raise ApiError(status, "invalid_audio", exc.message, param="file") from exc
    except EnvironmentProblem as exc:
        raise ApiError(500, exc.code, exc.message, kind="server_error") from exc


def _shape(result: Any, response_format: ResponseFormat, task: str, words: bool) -> Response:
    from ..writers import render

    if response_format == "json":
        return JSONResponse(TranscriptionJSON(text=result.text).model_dump())
    if response_format == "verbose_json":
        body = verbose_from_transcript(result, task=task, words=words)
        return JSONResponse(body.model_dump(exclude_none=True))
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    media = "text/vtt; charset=utf-8" if response_format == "vtt" else "text/plain; charset=utf-8"
    return Response(render(result, response_format), media_type=media)
