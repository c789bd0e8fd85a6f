"""``POST /v1/audio/transcriptions`` on 8000: the OpenAI shape, per-user keys, recorded as a job.

An ``openai`` client pointed at the backend with a user's key works as it
does against 8001; the answer is the same, and the call is also a job (kind
``sync``) with its transcripts in storage and its id in ``X-Twi-Asr-Job-Id``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...writers import render
from ..errors import InvalidInput
from ..services import execution, jobs
from ..services import outputs as outputs_mod
from ..services.execution import Claim
from .context import request_id_var
from .deps import Ctx, CurrentUser
from .errors import ERRORS, error_doc, error_response
from .forms import EMPTY, FILE, STR, body_doc, object_schema, read_form

__all__ = ["router"]

router = APIRouter(tags=["openai"], responses=ERRORS)
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")

_GRAINS = {"type": "array", "items": {"type": "string", "enum": ["word", "segment"]}}
OPENAI_BODY = body_doc(
    {
        "multipart/form-data": object_schema(
            {
                "file": FILE,
                "model": STR,
                "language": STR,
                "prompt": STR,
                "response_format": {"type": "string", "enum": ["", *FORMATS]},  # "": json
                "temperature": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, EMPTY]},
                "timestamp_granularities[]": _GRAINS,
            },
            required=("file",),
        )
    }
)


def _check_temperature(value: Any) -> None:
    """A JSON number from 0 to 1, as documented ("+1" or "1." are not; empty is the default 0)."""
    try:
        number = json.loads(value or "0")
    except (TypeError, ValueError):  # not a number, or a file part
        number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 1:
        raise InvalidInput(
            "temperature must be a number from 0 to 1", code="invalid_option", param="temperature"
        )


def _options(form: Any) -> tuple[dict[str, Any], str]:
    fmt = str(form.get("response_format") or "json")
    if fmt not in FORMATS:
        raise InvalidInput(
            f"response_format must be one of {', '.join(FORMATS)}",
            code="invalid_format",
            param="response_format",
        )
    if str(form.get("stream") or "").lower() in ("1", "true"):
        raise InvalidInput(
            "stream=true is served by the ASR server (8001) directly, not through the backend",
            code="stream_unsupported",
            param="stream",
        )
    grains = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    unknown = sorted({str(g) for g in grains} - {"word", "segment"})
    if unknown:
        raise InvalidInput(
            f"timestamp_granularities[] takes word and segment, not {unknown[0]!r}",
            code="invalid_option",
            param="timestamp_granularities[]",
        )
    _check_temperature(form.get("temperature"))
    raw = {
        "language": form.get("language"),
        "prompt": form.get("prompt"),
        "word_timestamps": "word" in grains,
    }
    return jobs.validate_options(raw), fmt


def _run(ctx: Any, user: Any, req: jobs.JobRequest, upload: UploadFile) -> tuple[Any, Any]:
    """Record the job, transcribe on the pool, store every format, finish the job: (job, result)."""
    from ..asr import AsrRejected, AsrUnavailable

    job, _ = jobs.submit_file(ctx.db, ctx.blobs, ctx.settings, user, req, upload.file, kind="sync")
    c = Claim(job.id, job.lease_token, 1)
    with tempfile.TemporaryDirectory(prefix="twi-asr-sync-") as tmp:
        path = Path(tmp) / ("input" + Path(job.filename).suffix[:10])
        upload.file.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        try:
            result = ctx.asr.transcribe(
                path, dict(job.options), filename=job.filename, request_id=job.request_id
            )
        except (AsrRejected, AsrUnavailable) as exc:
            execution.finish_failed(ctx.db, c, exc.code, exc.message)
            raise
    outputs = outputs_mod.store_outputs(
        ctx.blobs, job.id, job.filename, result.transcript, asr_seconds=result.seconds
    )
    done = execution.finish_done(
        ctx.db,
        c,
        outputs_mod.summary(result.transcript, result.server, outputs, {"asr_s": round(result.seconds, 3)}),
    )
    if ctx.metrics is not None and done is not None:
        ctx.metrics.observe_job(done)
    return done or job, result


@router.post(
    "/v1/audio/transcriptions",
    openapi_extra=OPENAI_BODY,
    summary="Transcribe now (OpenAI-compatible)",
    responses={
        200: {
            "content": {"application/json": {}, "text/plain": {}, "text/vtt": {}, "application/x-subrip": {}}
        },
        413: error_doc("Upload or audio duration over a limit"),
        415: error_doc("Not audio or video, or a format that cannot be decoded"),
        422: error_doc("Audio the ASR server refused (empty, or too short)"),
        429: error_doc("Over a quota (Retry-After)"),
        502: error_doc("The ASR server answered something that is not a transcript"),
        504: error_doc("No ASR server answered in time"),
    },
)
async def transcriptions(request: Request, ctx: Ctx, user: CurrentUser) -> Response:
    """Synchronous, like 8001; also recorded as a job."""
    from ..asr import AsrRejected

    form = await read_form(request)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("the form has no 'file' part", code="missing_file", param="file")
        options, fmt = _options(form)
        req = jobs.JobRequest(
            filename=jobs.clean_filename(upload.filename),
            content_type=upload.content_type,
            options=options,
            request_id=request_id_var.get(),
        )
        try:
            job, result = await run_in_threadpool(_run, ctx, user, req, upload)
        except AsrRejected as exc:
            return error_response(getattr(exc, "status", 422) or 422, exc.code, exc.message)
    finally:
        await form.close()
    headers = {"X-Twi-Asr-Job-Id": job.id}
    tr = result.transcript
    if fmt == "verbose_json":
        return JSONResponse(result.body, headers=headers)
    if fmt == "json":
        return JSONResponse({"text": tr.text}, headers=headers)
    if fmt == "text":
        return PlainTextResponse(tr.text + "\n", headers=headers)
    media = "text/vtt" if fmt == "vtt" else "application/x-subrip"
    return Response(render(tr, fmt).encode("utf-8"), media_type=f"{media}; charset=utf-8", headers=headers)
