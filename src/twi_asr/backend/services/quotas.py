"""Per-user quotas: jobs in flight, and audio minutes per UTC day.

Over a quota is :class:`~twi_asr.backend.errors.QuotaExceeded` (429) with a
Retry-After that means something: a few seconds for jobs in flight (one will
finish), the time to the next UTC midnight for the audio budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..db.models import ACTIVE_STATES, Job, User, utcnow
from ..errors import QuotaExceeded
from ..settings import BackendSettings

__all__ = ["Usage", "check_submit", "daily_minutes", "usage"]


@dataclass(frozen=True)
class Usage:
    """A user's limits and what they use now."""

    max_concurrent_jobs: int
    audio_minutes_per_day: float
    active_jobs: int
    audio_minutes_today: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``/v1/me``."""
        return {
            "quotas": {
                "max_concurrent_jobs": self.max_concurrent_jobs,
                "audio_minutes_per_day": self.audio_minutes_per_day,
            },
            "usage": {
                "active_jobs": self.active_jobs,
                "audio_minutes_today": round(self.audio_minutes_today, 3),
            },
        }


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def usage(s: Any, user: User, settings: BackendSettings) -> Usage:
    """Limits (the user's own, else the server's) and today's use."""
    from sqlalchemy import func, select

    active = s.scalar(
        select(func.count()).select_from(Job).where(Job.user_id == user.id, Job.status.in_(ACTIVE_STATES))
    )
    seconds = s.scalar(
        select(func.coalesce(func.sum(func.coalesce(Job.duration, Job.audio_seconds, 0.0)), 0.0)).where(
            Job.user_id == user.id,
            Job.created_at >= _day_start(utcnow()),
            Job.status != "failed",
        )
    )
    return Usage(
        max_concurrent_jobs=user.max_concurrent_jobs or settings.max_concurrent_jobs,
        audio_minutes_per_day=user.audio_minutes_per_day or settings.audio_minutes_per_day,
        active_jobs=int(active or 0),
        audio_minutes_today=float(seconds or 0.0) / 60.0,
    )


def check_submit(s: Any, user: User, settings: BackendSettings, audio_seconds: float | None) -> Usage:
    """Refuse a new job over either quota (429); returns the usage it was judged on."""
    now = utcnow()
    u = usage(s, user, settings)
    if u.active_jobs >= u.max_concurrent_jobs:
        raise QuotaExceeded(
            f"you have {u.active_jobs} jobs queued or running, the most allowed at once; "
            "wait for one to finish",
            code="concurrent_jobs_quota",
            retry_after_s=5,
        )
    wanted = u.audio_minutes_today + (audio_seconds or 0.0) / 60.0
    if u.audio_minutes_today >= u.audio_minutes_per_day or wanted > u.audio_minutes_per_day:
        midnight = _day_start(now) + timedelta(days=1)
        raise QuotaExceeded(
            f"this would make {wanted:.1f} audio minutes today, over your {u.audio_minutes_per_day:g} "
            "per UTC day; the budget renews at midnight UTC",
            code="audio_quota",
            retry_after_s=int((midnight - now).total_seconds()) + 1,
        )
    return u


def daily_minutes(s: Any, *, days: int = 7) -> dict[str, dict[str, float]]:
    """Audio minutes per user per UTC day over the last ``days`` days: user id -> {YYYY-MM-DD: minutes}.

    Counted as the quota counts them (failed jobs are free). Summed in Python
    from one narrow query, the same on SQLite and PostgreSQL (no date functions).
    """
    from sqlalchemy import func, select

    since = _day_start(utcnow()) - timedelta(days=days - 1)
    rows = s.execute(
        select(Job.user_id, Job.created_at, func.coalesce(Job.duration, Job.audio_seconds, 0.0)).where(
            Job.created_at >= since, Job.status != "failed"
        )
    )
    out: dict[str, dict[str, float]] = {}
    for user_id, created, seconds in rows:
        day = created.date().isoformat()
        per_day = out.setdefault(user_id, {})
        per_day[day] = per_day.get(day, 0.0) + float(seconds or 0.0) / 60.0
    return {u: {d: round(m, 3) for d, m in sorted(days_.items())} for u, days_ in out.items()}
