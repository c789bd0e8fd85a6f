"""``/v1/jobs``: submit (multipart file, upload id or S3 URI), list, get, transcript, cancel or delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...writers import FORMATS
from ..db.models import JOB_STATES
from ..errors import InvalidInput
from ..services import jobs
from ..services.views import job_view
from .context import request_id_var
from .deps import Ctx, CurrentUser
from .errors import ERRORS, error_doc
from .forms import (
    BOOL,
    EMPTY,
    FILE,
    INT,
    OPTION_FIELDS,
    STR,
    body_doc,
    content_disposition,
    object_schema,
    read_form,
    read_json,
    refuse_unknown,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

# What validate_options and validate_webhook accept; every other field is refused (400 unknown_field).
# An empty text (or a JSON null) leaves an option at its default.
_OPTIONS: dict[str, dict[str, Any]] = {
    "language": STR | {"maxLength": 20},
    "prompt": STR | {"maxLength": 4000},
    "word_timestamps": BOOL,
    "task": {"type": "string", "enum": ["", "transcribe", "translate"]},
    "beam_size": INT | {"minimum": 1, "maximum": 20},
    "webhook_url": {"anyOf": [STR | {"maxLength": 2000, "pattern": r"^https?://\S+$"}, EMPTY]},
}
# A form is text: its numbers and flags arrive as words ("7", "on" from a checkbox, "").
_FORM_OPTIONS = _OPTIONS | {
    "word_timestamps": {"anyOf": [BOOL, {"enum": ["", "1", "0", "true", "false", "yes", "no", "on", "off"]}]},
    "beam_size": {"anyOf": [_OPTIONS["beam_size"], EMPTY]},
}
_IGNORED = {"model": STR, "response_format": STR}  # OpenAI-style fields a form may carry; not used
JOB_BODY = body_doc(
    {
        "multipart/form-data": object_schema(
            {"file": FILE, **_FORM_OPTIONS, **_IGNORED}, required=("file",), closed=True
        ),
        "application/json": object_schema(
            {"upload_id": STR, "s3_uri": STR}
            | {k: {"anyOf": [v, {"type": "null"}]} for k, v in _OPTIONS.items()},
            closed=True,
        ),
    }
)


def _check_json_types(body: dict[str, Any]) -> None:
    """JSON values of the documented types: a form's words ("true", "7") are for forms only."""
    for key, value in body.items():
        if value is None:
            continue
        if key == "word_timestamps":
            ok, want = isinstance(value, bool), "true or false"
        elif key == "beam_size":
            whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ok, want = whole and not isinstance(value, bool), "a whole number"
        else:
            ok, want = isinstance(value, str), "text"
        if not ok:
            raise InvalidInput(f"{key} must be {want}", param=key)


def _request(
    fields: dict[str, Any], idem: str | None, filename: str = "", content_type: str | None = None
) -> jobs.JobRequest:
    if idem is not None and not 1 <= len(idem) <= 200:
        raise InvalidInput("Idempotency-Key must have 1 to 200 characters", param="Idempotency-Key")
    options = jobs.validate_options({k: fields[k] for k in OPTION_FIELDS if k in fields})
    return jobs.JobRequest(
        filename=jobs.clean_filename(filename),
        content_type=content_type,
        options=options,
        webhook_url=jobs.validate_webhook(fields.get("webhook_url")),
        idempotency_key=idem,
        request_id=request_id_var.get(),
    )


def _answer(job: Any, created: bool, ctx: Any) -> JSONResponse:
    if created and ctx.workers is not None:
        ctx.workers.wake()
    return JSONResponse(
        job_view(job), status_code=202 if created else 200, headers={"Location": f"/v1/jobs/{job.id}"}
    )


@router.post(
    "",
    status_code=202,
    openapi_extra=JOB_BODY,
    summary="Submit a transcription job",
    responses={
        202: {"description": "Accepted: the job, queued"},
        200: {"description": "Idempotent replay"},
        403: error_doc("s3_uri jobs are off on this server (TWI_ASR_ALLOW_S3_URIS=0)"),
        409: ERRORS[404] | {"description": "Upload not finished or already used"},
        413: ERRORS[400] | {"description": "Upload over the size limit"},
        415: ERRORS[400] | {"description": "Not audio or video"},
        429: ERRORS[400] | {"description": "Over a quota (Retry-After)"},
    },
)
async def submit(
    request: Request, ctx: Ctx, user: CurrentUser, idempotency_key: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Multipart with ``file``, or JSON with ``upload_id`` or ``s3_uri``; options as fields."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await read_form(request)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput(
                    "the form has no 'file' part: send the audio as file=@clip.wav",
                    code="missing_file",
                    param="file",
                )
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            refuse_unknown(fields, {*OPTION_FIELDS, "webhook_url", "model", "response_format"})
            req = _request(fields, idempotency_key, upload.filename or "", upload.content_type)
            job, created = await run_in_threadpool(
                jobs.submit_file, ctx.db, ctx.blobs, ctx.settings, user, req, upload.file
            )
        finally:
            await form.close()
        return _answer(job, created, ctx)
    if kind in ("application/json", ""):
        body = await read_json(request)
        refuse_unknown(body, {*OPTION_FIELDS, "webhook_url", "upload_id", "s3_uri"})
        _check_json_types(body)
        req = _request(body, idempotency_key)
        if isinstance(body.get("upload_id"), str):
            job, created = await run_in_threadpool(
                jobs.submit_upload, ctx.db, ctx.blobs, ctx.settings, user, req, body["upload_id"]
            )
        elif isinstance(body.get("s3_uri"), str):
            job, created = await run_in_threadpool(
                jobs.submit_s3_uri, ctx.db, ctx.blobs, ctx.settings, user, req, body["s3_uri"]
            )
        else:
            raise InvalidInput(
                "a JSON job needs 'upload_id' or 's3_uri' (or send multipart with a file)",
                code="missing_source",
            )
        return _answer(job, created, ctx)
    raise InvalidInput(
        f"unsupported content type {kind!r}: send multipart/form-data or application/json",
        code="unsupported_content_type",
    )


@router.get("", summary="List your jobs, newest first")
def list_jobs(
    ctx: Ctx,
    user: CurrentUser,
    status: Annotated[str | None, Query(json_schema_extra={"enum": list(JOB_STATES)})] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="The next_cursor of the page before")] = None,
    q: Annotated[str | None, Query(max_length=200, description="In the file name or text, any case")] = None,
    total: Annotated[bool, Query(description="Also count every matching job")] = False,
) -> dict[str, Any]:
    """A page of the caller's jobs; pass ``next_cursor`` back as ``cursor`` for the next one."""
    with ctx.db.session() as s:
        rows, nxt = jobs.list_jobs(s, user, status=status, limit=limit, cursor=cursor, search=q)
        page: dict[str, Any] = {"object": "list", "data": [job_view(j) for j in rows], "next_cursor": nxt}
        if total:
            page["total"] = jobs.count_jobs(s, user, status=status, search=q)
        return page


@router.get("/{job_id}", summary="One job")
def get_job(job_id: str, ctx: Ctx, user: CurrentUser) -> dict[str, Any]:
    """The job's state and, when done, its summary."""
    with ctx.db.session() as s:
        return job_view(jobs.get_job(s, user, job_id))


@router.get(
    "/{job_id}/transcript",
    summary="Download the transcript",
    responses={
        200: {"content": {"text/plain": {}, "application/json": {}, "text/vtt": {}}},
        409: ERRORS[404] | {"description": "The job is not done"},
    },
)
def get_transcript(
    job_id: str,
    ctx: Ctx,
    user: CurrentUser,
    format: Annotated[str, Query(json_schema_extra={"enum": list(FORMATS)})] = "txt",
    original: Annotated[bool, Query(description="The model's words, without people's corrections")] = False,
) -> Response:
    """txt, json, srt, vtt or tsv with any corrections; named after the upload (UTF-8 names kept)."""
    data, name, media = jobs.transcript(ctx.db, ctx.blobs, user, job_id, format, original=original)
    return Response(
        data,
        media_type=media if media == "application/json" else f"{media}; charset=utf-8",  # srt too: UTF-8
        headers={"Content-Disposition": content_disposition(name)},
    )


@router.delete(
    "/{job_id}",
    summary="Cancel a job, or delete a finished one",
    responses={200: {"description": "Cancelled"}, 204: {"description": "Deleted with its files"}},
)
def delete_job(job_id: str, ctx: Ctx, user: CurrentUser) -> Response:
    """Queued or running: cancelled (200 with the job). Finished: deleted with its files (204)."""
    job = jobs.cancel_or_delete(ctx.db, ctx.blobs, user, job_id)
    if job is None:
        return Response(status_code=204)
    return JSONResponse(job_view(job))
