"""``twi-asr serve``: the HTTP inference server on port 8001 (uvicorn)."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from .options import ComputeTypeOpt, DeviceOpt


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to bind (TWI_ASR_HOST, default 0.0.0.0).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port (TWI_ASR_PORT, default 8001).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Alias, folder, hub id or s3:// (TWI_ASR_MODEL, default twi)."),
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", "-e", help="auto, transformers or ctranslate2 (TWI_ASR_ENGINE).")
    ] = None,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "default",
    long_form: Annotated[
        str | None,
        typer.Option(
            "--long-form",
            help="Uploads over 30 s: vad (cut on silence, batched), sequential, or auto "
            "(TWI_ASR_LONG_FORM; default auto).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="TWI_ASR_API_KEY", help="Require 'Authorization: Bearer KEY'."),
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching", help="Gather concurrent requests into engine batches (default on)."
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option("--max-batch-size", min=1, help="Most clips per engine batch (default 8).")
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option("--max-wait-ms", min=0, help="How long a batch waits for company, ms (default 20)."),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option("--max-queue", min=1, help="Queued requests before 503 + Retry-After (default 64)."),
    ] = None,
    request_timeout_s: Annotated[
        float | None, typer.Option("--request-timeout", help="Per-request timeout in seconds (default 300).")
    ] = None,
    max_upload_mb: Annotated[
        float | None, typer.Option("--max-upload-mb", help="Largest upload in MB (default 100).")
    ] = None,
    max_audio_s: Annotated[
        float | None, typer.Option("--max-audio-s", help="Longest audio in seconds (default 10800).")
    ] = None,
    max_queued_audio_s: Annotated[
        float | None,
        typer.Option(
            "--max-queued-audio-s",
            help="Audio seconds held at once (decoding, queued, running) before 503 (default 14400).",
        ),
    ] = None,
    engine_workers: Annotated[
        int | None,
        typer.Option(
            "--engine-workers", min=0, help="Engine lanes running at once (0 = auto: 2 for ct2 on CPU)."
        ),
    ] = None,
    log_json: Annotated[
        bool | None, typer.Option("--log-json/--log-text", help="JSON log lines (TWI_ASR_LOG_JSON).")
    ] = None,
) -> None:
    """Serve the engine over HTTP: OpenAI-compatible /v1/audio/transcriptions, health, metrics."""
    from ..errors import UsageError

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "model": model,
            "engine": engine,
            "long_form": long_form,
            "api_key": api_key,
            "batching": batching,
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "max_queue": max_queue,
            "request_timeout_s": request_timeout_s,
            "max_upload_mb": max_upload_mb,
            "max_audio_s": max_audio_s,
            "max_queued_audio_s": max_queued_audio_s,
            "engine_workers": engine_workers,
            "log_json": log_json,
            "device": None if device == "auto" else device,
            "compute_type": None if compute_type == "default" else compute_type,
        }.items()
        if v is not None
    }
    try:
        from pydantic import ValidationError

        from ..server.settings import ServerSettings
    except ImportError as exc:
        from ..errors import DependencyMissingError

        raise DependencyMissingError("the server needs its extra: pip install 'twi-asr[server]'") from exc
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        from .options import settings_error

        raise UsageError(settings_error(exc)) from None
    run_server(settings)


def run_server(settings: Any) -> None:
    """Resolve the model (fail fast), then run uvicorn until SIGTERM/SIGINT (graceful)."""
    import uvicorn

    from ..engines import pick_engine
    from ..models import resolve_model
    from ..server.app import create_app
    from ..server.logs import configure

    configure(settings.log_level, json_lines=settings.log_json)
    resolved = resolve_model(settings.model)
    pick_engine(settings.engine, resolved)  # a wrong --engine is exit 2 now, not a never-ready server
    app = create_app(settings, resolved=resolved)
    # uvicorn re-raises the signal it caught once its graceful shutdown is done, which would end a
    # cleanly drained server with status 143; a no-op handler makes a drained SIGTERM exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        server_header=False,
    )
