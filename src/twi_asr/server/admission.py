"""Admission control by audio seconds: the server's memory is bounded by what it agreed to hold.

Counting requests does not bound memory: 64 queued uploads of almost 3 hours each are 40 GB
of float32 samples. So every upload reserves its duration (read from its header before it
is decoded) against ``max_queued_audio_s`` for as long as the server holds its audio:
while it is decoded, queued and transcribed. A reservation that does not fit is refused at
once with 503 + Retry-After, before any decoding. When the header carries no duration the
reservation is the per-request limit, and it is corrected once the audio is decoded.
An upload is always admitted when the server holds nothing, so one long file is never
refused forever because it is larger than the bound.
"""

from __future__ import annotations

from collections.abc import Callable

from .batching import QueueFullError
from .metrics import Metrics


class Ticket:
    """One request's reservation; :meth:`release` it when the request's audio is freed."""

    def __init__(self, admission: Admission, seconds: float) -> None:
        self._admission = admission
        self.seconds = seconds
        self._released = False

    def resize(self, seconds: float) -> None:
        """Correct the reservation to the decoded duration (never refused: the audio is here)."""
        if not self._released:
            self._admission._held += seconds - self.seconds
            self.seconds = seconds
            self._admission._publish()

    def release(self) -> None:
        """Give the seconds back (idempotent)."""
        if not self._released:
            self._released = True
            self._admission._held -= self.seconds
            self._admission._publish()


class Admission:
    """Reserves audio seconds against a bound; the event loop is its only caller (no locks)."""

    def __init__(self, max_seconds: float, metrics: Metrics, retry_after: Callable[[], int]) -> None:
        self.max_seconds = max_seconds
        self.metrics = metrics
        self._retry_after = retry_after
        self._held = 0.0

    @property
    def held(self) -> float:
        """Audio seconds reserved now."""
        return max(0.0, self._held)

    def admit(self, seconds: float) -> Ticket:
        """Reserve ``seconds`` or raise :class:`QueueFullError` (503) when they do not fit."""
        if self._held > 1e-9 and self._held + seconds > self.max_seconds:
            self.metrics.refused.labels(reason="audio_seconds").inc()
            raise QueueFullError(
                f"the server holds {self.held:.0f} s of audio and this upload adds {seconds:.0f} s; "
                f"its bound is {self.max_seconds:g} s (TWI_ASR_MAX_QUEUED_AUDIO_S); retry later",
                retry_after=max(1, self._retry_after()),
            )
        self._held += seconds
        self._publish()
        return Ticket(self, seconds)

    def _publish(self) -> None:
        self.metrics.admitted_audio_seconds.set(self.held)
