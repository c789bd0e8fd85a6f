"""The per-file record: what the ledger stores, the report lists and JUnit turns into a test case."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["FileRecord", "Status"]

Status = Literal["ok", "failed", "pending"]


@dataclass
class FileRecord:
    """What happened to one input, in one run or an earlier one.

    ``content`` identifies the bytes that were transcribed (``sha256:...``
    for local files, ``etag:...`` for S3 objects) and ``config`` the model
    and decoding options; a rerun skips an input only when both match and
    its outputs are still there. ``text`` is the transcript's text, kept so
    that a resumed run can still score files done earlier. ``pending`` is an
    input an interrupted run never reached.
    """

    relative: str
    source: str
    status: Status
    content: str | None = None
    config: str | None = None
    outputs: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    text: str | None = None
    language: str | None = None
    error: str | None = None
    error_code: str | None = None
    server: str | None = None
    run_id: str | None = None
    finished_utc: str | None = None
    # filled when the report is built, never stored in the ledger
    previous_run: bool = False
    reference: str | None = None
    wer: float | None = None
    cer: float | None = None

    _LEDGER_ONLY_EXCLUDES = ("previous_run", "reference", "wer", "cer")

    def to_ledger(self) -> dict[str, Any]:
        """The fields worth keeping between runs (scores are recomputed from text and references)."""
        d = asdict(self)
        for key in self._LEDGER_ONLY_EXCLUDES:
            d.pop(key, None)
        return d

    @classmethod
    def from_ledger(cls, d: dict[str, Any]) -> FileRecord:
        """Inverse of :meth:`to_ledger`; unknown keys (from a newer version) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def rtf(self) -> float | None:
        """Wall seconds per audio second for this file (None without audio)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else None
