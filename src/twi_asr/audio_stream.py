"""Internal: turn decoded blocks at any rate into one float32 mono 16 kHz buffer, in bounded memory.

The decoders in :mod:`twi_asr.audio_decode` hand :class:`SampleSink` mono
float32 blocks at their native rate as they decode them. The sink

* checks each block for NaN/inf,
* resamples it with a ``soxr.ResampleStream`` (quality ``"HQ"``; one stream per
  run of one sample rate, flushed with ``last=True`` when the run ends), which
  gives the same samples as a one-shot ``soxr.resample`` of the whole run,
* writes the result into one output buffer, preallocated from the header's
  duration estimate and grown in place with ``ndarray.resize`` (``realloc``,
  which moves big buffers with ``mremap``, without a copy), then trimmed, so
  there is never a list of blocks to ``np.concatenate`` (a 2x peak), and
* counts the 16 kHz samples against the caller's limit and raises
  :class:`~twi_asr.errors.AudioTooLongError` as soon as the total passes it,
* refuses a sample rate outside :data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE`:
  a damaged header that says 1 Hz would turn each input sample into 16,000
  output samples (a 500 KB WAV into 8.7 GB and minutes of resampling).

Peak memory is therefore the 16 kHz output plus a few seconds of native-rate
blocks, whatever the input's rate and channel count. Pages of the
preallocated buffer that are never written are never touched, so a
generous estimate costs address space, not memory.
"""

from __future__ import annotations

import numpy as np

from twi_asr.errors import AudioError, AudioTooLongError, DependencyMissingError

SAMPLE_RATE = 16000
"""The sample rate (Hz) every Whisper model expects, and the one we decode to."""

RESAMPLE_QUALITY = "HQ"

MIN_SAMPLE_RATE = 4000
"""The lowest input rate accepted (Hz): below telephony's 8 kHz, and only 4x upsampling to 16 kHz."""
MAX_SAMPLE_RATE = 1_048_575
"""The highest input rate accepted (Hz): FLAC's limit, above any real recording (768 kHz)."""

# Blocks shorter than this (seconds at the native rate) are gathered before they are checked and
# resampled: PyAV hands over 20-60 ms frames, and one soxr call per frame costs more than the copy.
_GATHER_SECONDS = 1.0
_FIRST_GUESS_SECONDS = 60.0  # the buffer's first size when the header gives no duration
_MAX_PREALLOCATE_SECONDS = 4 * 3600.0  # a header claiming more is not believed up front
_GROW_SECONDS = 30.0


def seconds_text(seconds: float) -> str:
    """``36000`` for whole seconds, ``12.3`` otherwise: how limits and durations read in messages."""
    text = f"{seconds:.1f}"
    return text[:-2] if text.endswith(".0") else text


def too_long(label: str, seconds: float, limit: float, *, at_least: bool) -> AudioTooLongError:
    """The error for an input longer than ``limit``; the caller decides what to do with it."""
    known = "at least " if at_least else ""
    return AudioTooLongError(
        f"{label}: the audio is {known}{seconds_text(seconds)} s long; the limit is {seconds_text(limit)} s",
        seconds=seconds,
        limit=limit,
    )


def rate_problem(rate: int) -> str | None:
    """Why ``rate`` (Hz) cannot be an audio input's sample rate, or ``None`` when it can."""
    if MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return None
    return f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (a damaged header?)"


def check_header_seconds(label: str, seconds: float | None, limit: float | None) -> None:
    """Refuse at once an input whose header already says it is longer than ``limit``."""
    if limit is not None and seconds is not None and seconds > limit:
        raise too_long(label, seconds, limit, at_least=False)


def mix_down(frames: np.ndarray) -> np.ndarray:
    """Average a (samples, channels) float32 array to contiguous mono (a new array).

    A matrix-vector product: ~10x faster than ``mean(axis=1)``, which numpy
    runs as a slow reduction over the short channel axis.
    """
    channels = frames.shape[1]
    if channels == 1:
        return np.array(frames[:, 0], dtype=np.float32)  # a copy: the block buffer is reused
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    return np.ascontiguousarray(frames @ weights, dtype=np.float32)


class SampleSink:
    """Collects native-rate mono blocks into one float32 16 kHz buffer (see the module docstring).

    Args:
        label: What error messages call the input.
        max_seconds: Raise AudioTooLongError as soon as more than this many
            seconds have been decoded; ``None`` for no limit.
        expected_seconds: The header's duration, if any: the buffer's first size.
    """

    def __init__(self, label: str, max_seconds: float | None, expected_seconds: float | None) -> None:
        self.label = label
        self.limit = max_seconds
        self._max = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
        self.native_samples = 0
        """How many native-rate samples were added (0: the input held no audio)."""
        self.native_seconds = 0.0
        """How much audio was added, in seconds at its own rate(s)."""
        guess = expected_seconds if expected_seconds and expected_seconds > 0 else _FIRST_GUESS_SECONDS
        capacity = int(min(guess, _MAX_PREALLOCATE_SECONDS) * 1.01 * SAMPLE_RATE) + SAMPLE_RATE // 2
        if self._max is not None:
            capacity = min(capacity, self._max)  # more than the limit is never written
        self._buf = np.empty(max(capacity, 1), dtype=np.float32)
        self._n = 0
        self._rate = 0
        self._stream: object | None = None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    def add(self, mono: np.ndarray, rate: int) -> None:
        """Take one contiguous float32 mono block at ``rate`` Hz."""
        if not mono.size:
            return
        if rate != self._rate:
            self._drain()
            self._end_run()
            self._start_run(rate)
        self._pending.append(mono)
        self._pending_n += mono.size
        self.native_samples += mono.size
        self.native_seconds += mono.size / rate
        if self._pending_n >= _GATHER_SECONDS * rate:
            self._drain()

    def finish(self) -> np.ndarray:
        """Flush the resampler and return the trimmed 16 kHz samples (the sink's own buffer)."""
        self._drain()
        self._end_run()
        if self._n < self._buf.shape[0]:
            self._buf.resize(self._n, refcheck=False)  # realloc to the size used: no copy
        return self._buf

    # ------------------------------------------------------------------ internals

    def _start_run(self, rate: int) -> None:
        problem = rate_problem(rate)
        if problem is not None:
            raise AudioError(f"{self.label}: {problem}")
        self._rate = rate
        if rate == SAMPLE_RATE:
            return
        try:
            import soxr
        except ImportError as exc:
            raise DependencyMissingError(
                f"{self.label}: resampling {rate} Hz audio to {SAMPLE_RATE} Hz needs soxr: pip install soxr"
            ) from exc
        try:
            self._stream = soxr.ResampleStream(
                rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        except MemoryError:
            raise
        except Exception as exc:  # never leak a raw soxr error
            raise AudioError(f"{self.label}: cannot resample from {rate} Hz ({exc})") from exc

    def _drain(self) -> None:
        """Check, resample and store the gathered blocks."""
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending.clear()
        self._pending_n = 0
        if not np.isfinite(block).all():
            raise AudioError(f"{self.label}: contains NaN or infinite samples (a corrupt float audio file?)")
        self._write(block if self._stream is None else self._resample(block, last=False))

    def _end_run(self) -> None:
        """Flush the resampler's tail at the end of a run of one sample rate."""
        if self._stream is not None:
            self._write(self._resample(np.zeros(0, dtype=np.float32), last=True))
            self._stream = None

    def _resample(self, block: np.ndarray, *, last: bool) -> np.ndarray:
        try:
            out = self._stream.resample_chunk(block, last=last)  # type: ignore[attr-defined]
        except MemoryError:
            raise
        except Exception as exc:  # never leak a raw soxr error
            raise AudioError(f"{self.label}: cannot resample from {self._rate} Hz ({exc})") from exc
        return np.asarray(out, dtype=np.float32)

    def _write(self, out: np.ndarray) -> None:
        k = out.shape[0]
        if not k:
            return
        end = self._n + k
        if self._max is not None and end > self._max:
            assert self.limit is not None
            raise too_long(self.label, end / SAMPLE_RATE, self.limit, at_least=True)
        capacity = self._buf.shape[0]
        if end > capacity:
            grown = max(end, capacity + max(capacity // 4, int(_GROW_SECONDS * SAMPLE_RATE)))
            if self._max is not None:
                grown = min(grown, self._max)
            # realloc in place (mremap for big buffers: no copy); numpy zero-fills the new part.
            self._buf.resize(grown, refcheck=False)
        self._buf[self._n : end] = out
        self._n = end


__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "SampleSink",
    "check_header_seconds",
    "mix_down",
    "rate_problem",
    "seconds_text",
    "too_long",
]
