"""People's corrections to a finished transcript: one segment's text at a time, the original kept.

The outputs a worker stored (``jobs/ID/output/*``) are never rewritten: they
are the model's words. Edits live in ``jobs.edits`` (segment index -> text),
and every download is rendered from the stored JSON with the edits applied,
so a fresh download always shows the latest correction and ``original=true``
still gives what the model said. An edited segment loses its word timings in
the downloads: the model's words no longer match the text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...types import Transcript
from ..db.models import Job, utcnow
from ..errors import Conflict, InvalidInput, NotFound

__all__ = ["MAX_SEGMENT_CHARS", "apply_edits", "edit_segment", "load_transcript", "segment_views"]

MAX_SEGMENT_CHARS = 5000


def load_transcript(blobs: Any, job: Job) -> Transcript:
    """The model's transcript of a done job, from its stored JSON output."""
    import json

    if job.status != "done" or not job.outputs or "json" not in job.outputs:
        raise Conflict(f"job {job.id} is {job.status}, not done: no transcript yet", code="job_not_done")
    return Transcript.from_dict(json.loads(blobs.read_bytes(job.outputs["json"])))


def apply_edits(transcript: Transcript, edits: dict[str, str] | None) -> Transcript:
    """The transcript with edited segments' text replaced (and their words dropped), text rebuilt."""
    if not edits:
        return transcript
    segments = tuple(
        replace(seg, text=edits[str(i)], words=None) if str(i) in edits else seg
        for i, seg in enumerate(transcript.segments)
    )
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    return replace(transcript, segments=segments, text=text)


def segment_views(transcript: Transcript, edits: dict[str, str] | None) -> list[dict[str, Any]]:
    """Each segment as the web page shows it: times, current text, the model's text, its words."""
    edits = edits or {}
    out = []
    for i, seg in enumerate(transcript.segments):
        edited = str(i) in edits
        out.append(
            {
                "index": i,
                "start": round(seg.start, 3),
                "end": round(seg.end, 3),
                "text": edits[str(i)] if edited else seg.text.strip(),
                "original_text": seg.text.strip(),
                "edited": edited,
                "words": [
                    {"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word}
                    for w in (seg.words or ())
                ]
                if not edited
                else [],
            }
        )
    return out


def edit_segment(db: Any, blobs: Any, job: Job, index: object, text: object) -> dict[str, Any]:
    """Set (text) or undo (None) one segment's correction; returns that segment's view.

    The row is locked while it changes, so two people saving different
    segments of one job at once both keep their edit.
    """
    from sqlalchemy import select

    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidInput("the segment index must be a whole number from 0", param="index")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("text must be the segment's new text, or null to undo the edit", param="text")
    if isinstance(text, str):
        text = " ".join(text.split())
        if len(text) > MAX_SEGMENT_CHARS:
            raise InvalidInput(f"a segment's text has at most {MAX_SEGMENT_CHARS} characters", param="text")
    transcript = load_transcript(blobs, job)
    if index >= len(transcript.segments):
        raise NotFound(
            f"job {job.id} has {len(transcript.segments)} segments: no segment {index}",
            code="segment_not_found",
        )
    original = transcript.segments[index].text.strip()
    with db.session() as s:
        row = s.scalars(select(Job).where(Job.id == job.id).with_for_update()).one()
        edits = dict(row.edits or {})
        if text is None or text == original:
            edits.pop(str(index), None)
        else:
            edits[str(index)] = text
        row.edits = edits or None
        row.edited_at = utcnow()
        job.edits = row.edits
    return segment_views(transcript, job.edits)[index]
