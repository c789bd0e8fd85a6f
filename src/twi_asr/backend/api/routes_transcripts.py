"""A done job's transcript as people work on it: its segments, their corrections, and its audio.

``GET /v1/jobs/{id}/segments`` gives every segment with its times, words, the
model's text and any correction; ``PATCH /v1/jobs/{id}/segments/{index}``
saves (or, with ``null``, undoes) one correction; ``GET /v1/jobs/{id}/audio``
serves the uploaded audio for the player, with Range support so it can seek
(a local store answers itself; S3 is a redirect to a presigned GET).
"""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidInput, NotFound
from ..services import jobs
from ..services.edits import MAX_SEGMENT_CHARS, edit_segment, load_transcript, segment_views
from ..services.views import iso
from .deps import Ctx, CurrentUser
from .errors import ERRORS, error_doc
from .forms import STR, body_doc, content_disposition, object_schema, read_json, refuse_unknown

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["transcripts"], responses=ERRORS)
AUDIO_URL_TTL_S = 3600
EDIT_BODY = body_doc(
    {
        "application/json": object_schema(
            {"text": {"anyOf": [STR | {"maxLength": MAX_SEGMENT_CHARS}, {"type": "null"}]}},
            required=("text",),
            closed=True,
        )
    }
)
NOT_DONE = {409: error_doc("The job is not done")}


def _job(ctx: Any, user: Any, job_id: str) -> Any:
    with ctx.db.session() as s:
        return jobs.get_job(s, user, job_id)


@router.get("/{job_id}/segments", summary="The transcript's segments, with corrections", responses=NOT_DONE)
async def segments(job_id: str, ctx: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Segments with start, end, text (corrected if edited), original_text, edited and words."""
    job = _job(ctx, user, job_id)
    transcript = await run_in_threadpool(load_transcript, ctx.blobs, job)
    views = segment_views(transcript, job.edits)
    return {
        "object": "list",
        "job_id": job.id,
        "language": transcript.language,
        "duration": transcript.duration,
        "edited": sum(v["edited"] for v in views),
        "edited_at": iso(job.edited_at),
        "data": views,
    }


@router.patch(
    "/{job_id}/segments/{index}",
    openapi_extra=EDIT_BODY,
    summary="Correct one segment's text (null undoes it)",
    responses=NOT_DONE | {404: error_doc("No such job or segment")},
)
async def correct(
    job_id: str,
    index: Annotated[int, Path(ge=0, le=1_000_000)],
    request: Request,
    ctx: Ctx,
    user: CurrentUser,
) -> dict[str, Any]:
    """``{"text": "..."}`` saves a correction; the original stays, and downloads use the correction."""
    body = await read_json(request)
    refuse_unknown(body, {"text"})
    if "text" not in body:
        raise InvalidInput("send {'text': 'the corrected text'} (or null to undo)", param="text")
    job = _job(ctx, user, job_id)
    return await run_in_threadpool(edit_segment, ctx.db, ctx.blobs, job, index, body["text"])


@router.get(
    "/{job_id}/audio",
    summary="The job's audio, for a player (Range requests work)",
    responses={
        200: {"content": {"audio/*": {}}},
        206: {"description": "Part of the audio (Range)"},
        307: {"description": "To a presigned storage URL"},
        404: error_doc("No such job, or its audio is not kept here"),
    },
)
def audio(job_id: str, ctx: Ctx, user: CurrentUser) -> Response:
    """The upload as it was sent, named after it; jobs made from an ``s3://`` URI have none here."""
    job = _job(ctx, user, job_id)
    if job.source_uri.startswith("s3://"):
        raise NotFound(
            "this job's audio is in your own bucket (it came from an s3:// URI): the backend keeps no copy",
            code="audio_unavailable",
        )
    media = job.content_type or mimetypes.guess_type(job.filename)[0] or "application/octet-stream"
    if not media.startswith(("audio/", "video/")):
        media = mimetypes.guess_type(job.filename)[0] or "application/octet-stream"
    path = ctx.blobs.local_path(job.source_uri)
    if path is not None:
        name = PurePosixPath(job.filename).name or "audio"
        return FileResponse(
            path,
            media_type=media,
            headers={"Content-Disposition": content_disposition(name, inline=True)},
        )
    url = ctx.blobs.presign_get(job.source_uri, expires_s=AUDIO_URL_TTL_S, content_type=media)
    if url is None:
        raise NotFound(f"job {job.id}'s audio is gone from storage", code="audio_unavailable")
    return RedirectResponse(url, status_code=307)
