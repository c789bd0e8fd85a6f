"""Housekeeping the workers do between jobs: uploads announced but never made into a job are removed.

An upload slot whose URL expired an hour ago without a job is abandoned; its
file (if one was PUT) and its row go, so storage does not fill with orphans.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..db.models import Upload, utcnow

__all__ = ["sweep_uploads"]

GRACE = timedelta(hours=1)


def sweep_uploads(db: Any, blobs: Any, *, limit: int = 100) -> int:
    """Delete up to ``limit`` abandoned uploads (files, then rows); returns how many."""
    from sqlalchemy import delete, select

    cutoff = utcnow() - GRACE
    with db.session() as s:
        ids = list(
            s.scalars(
                select(Upload.id).where(Upload.job_id.is_(None), Upload.expires_at < cutoff).limit(limit)
            )
        )
    for upload_id in ids:
        blobs.delete_prefix(f"uploads/{upload_id}/")
        with db.session() as s:
            s.execute(delete(Upload).where(Upload.id == upload_id, Upload.job_id.is_(None)))
    return len(ids)
