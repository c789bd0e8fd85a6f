"""Jobs as the API sees them: submit (three ways), list, get, fetch a transcript, cancel or delete.

What a request may ask is checked in :mod:`.intake` first.

A submission stores the audio first and records the job after, so a failure
in between leaves no job pointing at nothing (and the stored file is removed).
An ``Idempotency-Key`` makes a retried POST return the job the first one made:
the key is unique per user in the database, so even two racing POSTs make one.
Another user's job is NotFound, never Forbidden: ids do not leak.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from ...writers import FORMATS
from ..db.models import ACTIVE_STATES, JOB_STATES, Job, Upload, User, new_id, utcnow
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from ..settings import BackendSettings
from .intake import JobRequest, check_type, clean_filename, validate_options, validate_webhook
from .quotas import check_submit

__all__ = [  # the intake names are re-exported: routes take everything about jobs from here
    "JobRequest",
    "cancel_or_delete",
    "check_type",
    "clean_filename",
    "count_jobs",
    "get_job",
    "list_jobs",
    "submit_file",
    "submit_s3_uri",
    "submit_upload",
    "transcript",
    "validate_options",
    "validate_webhook",
]

MEDIA_TYPES = {
    "txt": "text/plain",
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "tsv": "text/tab-separated-values",
}


def _existing(s: Any, user: User, key: str | None) -> Job | None:
    from sqlalchemy import select

    if not key:
        return None
    return s.scalars(select(Job).where(Job.user_id == user.id, Job.idempotency_key == key)).first()


def _record(
    db: Any,
    blobs: Any,
    settings: BackendSettings,
    user: User,
    job: Job,
    cleanup: str | None,
    audio_seconds: float | None,
) -> tuple[Job, bool]:
    """Insert the job (quota checked under a row lock of the user); on a lost idempotency race,
    remove what was stored and return the winner's job."""
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    try:
        with db.session() as s:
            if getattr(db, "is_sqlite", False):  # no row locks: a no-op write takes SQLite's write lock
                s.execute(update(User).where(User.id == user.id).values(name=User.name))  # so quotas hold
            locked = s.get(User, user.id, with_for_update=True)  # serialises one user's submits (PostgreSQL)
            found = _existing(s, user, job.idempotency_key)
            if found is None:
                check_submit(s, locked or user, settings, audio_seconds)
                s.add(job)
        if found is not None:  # raised inside the session, the rollback would expire (detach) ``found``
            raise _Duplicate(found)
        return job, True
    except _Duplicate as dup:
        if cleanup:
            blobs.delete_prefix(cleanup)
        return dup.job, False
    except IntegrityError:
        if cleanup:
            blobs.delete_prefix(cleanup)
        with db.session() as s:
            found = _existing(s, user, job.idempotency_key)
        if found is None:
            raise
        return found, False
    except BaseException:
        if cleanup:
            blobs.delete_prefix(cleanup)
        raise


class _Duplicate(Exception):
    def __init__(self, job: Job) -> None:
        self.job = job


def _new_job(user: User, req: JobRequest, job_id: str, source: str, **extra: Any) -> Job:
    return Job(
        id=job_id,
        user_id=user.id,
        filename=req.filename,
        content_type=req.content_type,
        source_uri=source,
        options=req.options,
        webhook_url=req.webhook_url,
        idempotency_key=req.idempotency_key,
        request_id=req.request_id,
        **extra,
    )


def submit_file(
    db: Any,
    blobs: Any,
    settings: BackendSettings,
    user: User,
    req: JobRequest,
    fileobj: BinaryIO,
    *,
    kind: str = "async",
) -> tuple[Job, bool]:
    """A job from a file the client sent in the request (streamed to storage, then recorded)."""
    from ...audio import probe_duration

    check_type(req.filename, req.content_type)
    with db.session() as s:
        found = _existing(s, user, req.idempotency_key)
        if found is not None:
            return found, False
        check_submit(s, user, settings, None)
    try:
        seconds = probe_duration(fileobj)
    except Exception:  # not audio: the ASR server will say why, and the job fails with its code
        seconds = None
    fileobj.seek(0)
    job_id = new_id("job")
    key = f"jobs/{job_id}/input/{req.filename}"
    try:
        size = blobs.put_stream(
            key, fileobj, max_bytes=int(settings.max_upload_mb * 1024 * 1024), content_type=req.content_type
        )
    except BaseException:  # over the limit, client gone: no empty jobs/<id>/input/ folder left behind
        blobs.delete_prefix(f"jobs/{job_id}/")
        raise
    if size == 0:
        blobs.delete_prefix(f"jobs/{job_id}/")
        raise InvalidInput(f"{req.filename!r} is empty", code="empty_file", param="file")
    extra: dict[str, Any] = {"size_bytes": size, "audio_seconds": seconds, "kind": kind}
    if kind == "sync":  # held by the request itself; reaped as interrupted if its process dies
        extra.update(
            status="running",
            started_at=utcnow(),
            attempts=1,
            lease_token=secrets.token_hex(16),
            lease_until=utcnow() + timedelta(seconds=settings.asr_timeout_s + 60),
        )
    return _record(
        db, blobs, settings, user, _new_job(user, req, job_id, key, **extra), f"jobs/{job_id}/", seconds
    )


def submit_upload(
    db: Any, blobs: Any, settings: BackendSettings, user: User, req: JobRequest, upload_id: str
) -> tuple[Job, bool]:
    """A job from a presigned upload the client has PUT its file to."""
    with db.session() as s:
        found = _existing(s, user, req.idempotency_key)
        if found is not None:
            return found, False
        upload = s.get(Upload, upload_id)
        if upload is None or upload.user_id != user.id:
            raise NotFound(f"no upload {upload_id!r}", code="upload_not_found", param="upload_id")
        if upload.job_id:
            raise Conflict(f"upload {upload_id} already made job {upload.job_id}", code="upload_used")
    size = blobs.size(upload.storage_key)
    if size is None:
        raise Conflict(
            f"nothing has been uploaded to upload {upload_id}'s URL yet: PUT the file first",
            code="upload_incomplete",
            param="upload_id",
        )
    if size > upload.max_bytes:
        blobs.delete_prefix(f"uploads/{upload_id}/")
        raise TooLarge(f"the uploaded file has {size} bytes, over the {upload.max_bytes} announced")
    req.filename = upload.filename
    req.content_type = req.content_type or upload.content_type
    job = _new_job(user, req, new_id("job"), upload.storage_key, size_bytes=size)
    job, created = _record(db, blobs, settings, user, job, None, None)
    if created:
        with db.session() as s:
            row = s.get(Upload, upload_id)
            if row is not None:
                row.job_id = job.id
    return job, created


def submit_s3_uri(
    db: Any, blobs: Any, settings: BackendSettings, user: User, req: JobRequest, uri: str
) -> tuple[Job, bool]:
    """A job from an object already in S3 that the backend's credentials can read."""
    if not settings.allow_s3_uris:
        raise Forbidden(
            "this backend does not take s3_uri jobs (TWI_ASR_ALLOW_S3_URIS=0)", code="s3_uri_disabled"
        )
    bucket, _, key = uri[len("s3://") :].partition("/") if uri.startswith("s3://") else ("", "", "")
    if not bucket or not key or key.endswith("/"):
        raise InvalidInput(
            "s3_uri must look like s3://bucket/path/to/file.wav", code="invalid_s3_uri", param="s3_uri"
        )
    req.filename = clean_filename(PurePosixPath(key).name)
    job = _new_job(user, req, new_id("job"), uri)
    return _record(db, blobs, settings, user, job, None, None)


def get_job(s: Any, user: User, job_id: str) -> Job:
    """The user's job, or NotFound (also for another user's job, or an id no database can hold)."""
    job = s.get(Job, job_id) if "\x00" not in job_id else None
    if job is None or job.user_id != user.id:
        raise NotFound(f"no job {job_id!r}", code="job_not_found")
    return job


def _cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _search(q: Any, text: str | None) -> Any:
    """Jobs whose file name or transcript contains ``text`` (any case; ``%`` and ``_`` literal)."""
    from sqlalchemy import func, or_

    text = (text or "").replace("\x00", "").strip()  # no stored text holds a NUL (PostgreSQL refuses one)
    if not text:
        return q
    if len(text) > 200:
        raise InvalidInput("search for at most 200 characters", param="q")
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return q.where(
        or_(
            func.lower(Job.filename).like(pattern, escape="\\"),
            func.lower(Job.text).like(pattern, escape="\\"),
        )
    )


def count_jobs(s: Any, user: User, *, status: str | None = None, search: str | None = None) -> int:
    """How many of the user's jobs match (for the web app's "N jobs")."""
    from sqlalchemy import func, select

    q = select(func.count()).select_from(Job).where(Job.user_id == user.id)
    if status:
        q = q.where(Job.status == status)
    return int(s.scalar(_search(q, search)) or 0)


def list_jobs(
    s: Any,
    user: User,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
    search: str | None = None,
) -> tuple[list[Job], str | None]:
    """The user's jobs, newest first, ``limit`` at a time; the cursor of the next page or None."""
    from sqlalchemy import and_, or_, select

    if status is not None and status not in JOB_STATES:
        raise InvalidInput(
            f"status must be one of {', '.join(JOB_STATES)}", code="invalid_status", param="status"
        )
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be from 1 to 100", param="limit")
    q = _search(select(Job).where(Job.user_id == user.id), search)
    if status:
        q = q.where(Job.status == status)
    if cursor:
        try:
            created, last_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            created_at = datetime.fromisoformat(created)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                "cursor is not one this server gave", code="invalid_cursor", param="cursor"
            ) from exc
        q = q.where(or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < last_id)))
    rows = list(s.scalars(q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_cursor(rows[-1]) if more and rows else None)


def transcript(
    db: Any, blobs: Any, user: User, job_id: str, fmt: str, *, original: bool = False
) -> tuple[bytes, str, str]:
    """A done job's transcript in ``fmt``: (bytes, download file name, media type).

    With people's edits it is rendered afresh with them (``original`` gives the model's words).
    """
    if fmt not in FORMATS:
        raise InvalidInput(
            f"format must be one of {', '.join(FORMATS)}", code="invalid_format", param="format"
        )
    with db.session() as s:
        job = get_job(s, user, job_id)
    if job.status != "done" or not job.outputs or fmt not in job.outputs:
        raise Conflict(f"job {job_id} is {job.status}, not done: no transcript yet", code="job_not_done")
    stem = PurePosixPath(job.filename).stem or "transcript"
    if job.edits and not original:
        from ...writers import render
        from .edits import apply_edits, load_transcript

        data = render(apply_edits(load_transcript(blobs, job), job.edits), fmt).encode("utf-8")
        return data, f"{stem}.{fmt}", MEDIA_TYPES[fmt]
    return blobs.read_bytes(job.outputs[fmt]), f"{stem}.{fmt}", MEDIA_TYPES[fmt]


def cancel_or_delete(db: Any, blobs: Any, user: User, job_id: str) -> Job | None:
    """Cancel a queued or running job (returns it), or delete a finished one with its files (None)."""
    from sqlalchemy import delete, update

    with db.session() as s:
        job = get_job(s, user, job_id)
        if job.status in ACTIVE_STATES:
            s.execute(
                update(Job)
                .where(Job.id == job.id, Job.status.in_(ACTIVE_STATES))
                .values(status="cancelled", finished_at=utcnow(), lease_token=None, lease_until=None)
            )
            s.flush()
            s.refresh(job)
            return job
        s.execute(delete(Job).where(Job.id == job.id))
    blobs.delete_prefix(f"jobs/{job.id}/")
    if job.source_uri.startswith("uploads/"):
        blobs.delete_prefix("/".join(job.source_uri.split("/")[:2]) + "/")
    return None
