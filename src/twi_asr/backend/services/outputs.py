"""A finished transcript into storage: every format, UTF-8, named after the upload."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ...writers import FORMATS, render

__all__ = ["store_outputs", "summary"]

CONTENT_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}


def store_outputs(
    blobs: Any, job_id: str, filename: str, transcript: Any, *, asr_seconds: float | None = None
) -> dict[str, str]:
    """Write txt, json, srt, vtt and tsv under ``jobs/ID/output/``; returns format -> key.

    Rewriting the same keys is harmless, so a job retried after a crash simply writes them again.
    """
    from ...types import Timings

    if asr_seconds is not None and not transcript.timings.total:  # 8001's JSON has no timings
        s = round(asr_seconds, 3)  # as the backend saw it: the whole call to 8001
        transcript = transcript.with_meta(timings=Timings(inference=s, total=s))
    stem = PurePosixPath(filename).stem or "transcript"
    outputs = {}
    for fmt in FORMATS:
        key = f"jobs/{job_id}/output/{stem}.{fmt}"
        blobs.put_bytes(key, render(transcript, fmt).encode("utf-8"), content_type=CONTENT_TYPES[fmt])
        outputs[fmt] = key
    return outputs


def summary(
    transcript: Any, server: str | None, outputs: dict[str, str], timings: dict[str, Any]
) -> dict[str, Any]:
    """The columns a finished job records in the database."""
    return {
        "text": transcript.text,
        "language": transcript.language,
        "duration": transcript.duration,
        "model": transcript.model,
        "engine": transcript.engine,
        "asr_server": server,
        "outputs": outputs,
        "timings": timings,
    }
