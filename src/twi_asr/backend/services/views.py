"""The public JSON shape of a job (the API's answer and the webhook's payload alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...writers import FORMATS
from ..db.models import Job

__all__ = ["iso", "job_view"]


def iso(t: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z`` (None stays None)."""
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def job_view(job: Job) -> dict[str, Any]:
    """Everything a client may know of a job, and links to what it can fetch."""
    done = job.status == "done"
    return {
        "id": job.id,
        "object": "transcription.job",
        "status": job.status,
        "filename": job.filename,
        "language": job.language or (job.options or {}).get("language"),
        "options": job.options or {},
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "audio_seconds": job.audio_seconds,
        "duration": job.duration,
        "size_bytes": job.size_bytes,
        "text": job.text,
        "model": job.model,
        "engine": job.engine,
        "attempts": job.attempts,
        "error": {"code": job.error_code, "message": job.error_message} if job.status == "failed" else None,
        # why a queued job is not running yet (every ASR server down, storage unreachable), if it waits
        "waiting": job.error_message if job.status == "queued" and job.error_code == "waiting" else None,
        "timings": job.timings,
        "webhook_url": job.webhook_url,
        "formats": list(FORMATS) if done else [],
        "edited_segments": len(job.edits or {}),
        "edited_at": iso(job.edited_at),
        "links": {
            "self": f"/v1/jobs/{job.id}",
            "transcript": f"/v1/jobs/{job.id}/transcript",
            "segments": f"/v1/jobs/{job.id}/segments",
            "audio": f"/v1/jobs/{job.id}/audio",
            "page": f"/jobs/{job.id}",
        },
    }
