"""A job's life on a worker: claim it under a lease, renew the lease, finish it exactly once.

The queue is the ``jobs`` table itself, so any number of backend processes on
any number of machines can share one database:

- **claim**: pick the oldest due job (queued and available, or running with a
  lease that ran out because its worker died) with ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL, then take it with an UPDATE guarded by the state it was seen
  in; ``rowcount == 1`` means this worker won (SQLite, which has no row locks,
  relies on that guard alone). The claim writes a fresh ``lease_token``.
- **renew**: while the worker works, ``lease_until`` moves forward, guarded by
  the token; a renewal that matches nothing means the job was cancelled or
  taken over, and the worker drops it.
- **finish**: the final UPDATE is guarded by the token and ``status='running'``,
  and the webhook delivery is inserted in the same transaction. A worker that
  lost its lease cannot finish the job a second time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..db.models import Job, utcnow
from . import webhooks
from .views import job_view

__all__ = ["Claim", "claim", "finish_done", "finish_failed", "reap_sync", "release", "renew"]


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: its id, its fencing token, and which attempt this is."""

    job_id: str
    token: str
    attempt: int


def claim(db: Any, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
    """Take the next due job, or None. A job whose workers died ``max_attempts`` times is failed instead."""
    from sqlalchemy import and_, or_, select, update

    now = utcnow()
    due = or_(
        and_(Job.status == "queued", Job.available_at <= now),
        and_(Job.status == "running", Job.lease_until < now),
    )
    with db.session() as s:
        q = (
            select(Job.id, Job.status, Job.attempts)
            .where(Job.kind == "async", due)
            .order_by(Job.available_at, Job.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        row = s.execute(q).first()
        if row is None:
            return None
        job_id, status, attempts = row
        if attempts >= max_attempts:
            s.execute(
                update(Job)
                .where(Job.id == job_id, due)
                .values(
                    status="failed",
                    finished_at=now,
                    lease_token=None,
                    lease_until=None,
                    error_code="worker_lost",
                    error_message=f"the job's worker stopped {attempts} times before it finished",
                )
            )
            job = s.get(Job, job_id)
            if job is not None and job.status == "failed":
                webhooks.enqueue(s, job, job_view(job))
            return None
        token = secrets.token_hex(16)
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == status, due)
            .values(
                status="running",
                lease_token=token,
                lease_until=now + timedelta(seconds=lease_s),
                attempts=Job.attempts + 1,
                started_at=now,
                worker=worker,
            )
        )
        if result.rowcount != 1:
            return None
        return Claim(job_id, token, attempts + 1)


def renew(db: Any, c: Claim, lease_s: float) -> bool:
    """Extend the lease; False when the job is no longer this worker's (cancelled or taken over)."""
    from sqlalchemy import update

    with db.session() as s:
        result = s.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.lease_token == c.token, Job.status == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )
        return bool(result.rowcount == 1)


def release(db: Any, c: Claim, delay_s: float, *, reason: str, give_back: bool = True) -> bool:
    """Put the job back in the queue for later (every ASR server down, storage unreachable).

    The attempt is given back (``give_back``): waiting on the infrastructure is not the job's
    fault. An unexpected error keeps it, so a job that trips a bug ends after ``max_attempts``.
    """
    from sqlalchemy import update

    with db.session() as s:
        result = s.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.lease_token == c.token, Job.status == "running")
            .values(
                status="queued",
                lease_token=None,
                lease_until=None,
                worker=None,
                available_at=utcnow() + timedelta(seconds=delay_s),
                attempts=Job.attempts - (1 if give_back else 0),
                asr_waits=Job.asr_waits + 1,
                error_code="waiting",
                error_message=reason,
            )
        )
        return bool(result.rowcount == 1)


def finish_done(db: Any, c: Claim, summary: dict[str, Any]) -> Job | None:
    """Record success (text, language, duration, model, timings, outputs) once; None if no longer ours."""
    return _finish(db, c, {"status": "done", "error_code": None, "error_message": None, **summary})


def finish_failed(db: Any, c: Claim, code: str, message: str) -> Job | None:
    """Record failure with a stable code (e.g. the ASR server's ``invalid_audio``); None if no longer ours."""
    return _finish(db, c, {"status": "failed", "error_code": code, "error_message": message[:4000]})


def _finish(db: Any, c: Claim, values: dict[str, Any]) -> Job | None:
    from sqlalchemy import update

    with db.session() as s:
        result = s.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.lease_token == c.token, Job.status == "running")
            .values(finished_at=utcnow(), lease_until=None, **values)
        )
        if result.rowcount != 1:
            return None
        job = s.get(Job, c.job_id)
        s.refresh(job)
        webhooks.enqueue(s, job, job_view(job))
        return job


def reap_sync(db: Any) -> int:
    """Fail synchronous jobs whose request died with its process (their lease ran out)."""
    from sqlalchemy import update

    now = utcnow()
    with db.session() as s:
        result = s.execute(
            update(Job)
            .where(Job.kind == "sync", Job.status == "running", Job.lease_until < now)
            .values(
                status="failed",
                finished_at=now,
                error_code="interrupted",
                error_message="the request ended before the transcription finished",
            )
        )
        return int(result.rowcount or 0)
