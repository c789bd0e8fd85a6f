"""The one contract every engine fulfils, plus helpers they share.

``Transcriber.transcribe(batch of audio, options) -> list[Transcript]``: engines
take whole batches so the CLI, the batch runner and the server's batcher can
hand them many clips at once. An engine is loaded once per process and is
safe to call from one worker thread at a time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np

from ..types import Segment, TokenLogprob, TranscribeOptions, Transcript, Word

AudioInput = np.ndarray
"""float32 mono samples at 16 kHz (see :func:`twi_asr.audio.decode_audio`)."""

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # samples per mel frame
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
MAX_FRAMES = 3000  # Whisper's 30 s window
MIN_FRAMES = 1000
"""Shortest batched window (10 s). On windows of a few seconds tiny.en sometimes never emits
end-of-text and loops to the length limit: 108 espeak clips of 2-4 s in batches of 8, each
window its longest clip + 2 s: 3 loops (WER 0.59 before they fall back, 17 s with the
fallback); windows of at least 10 s: no loop, WER 0.21, 12 s (faster-whisper clip by clip on
30 s windows: WER 0.24, 59 s). 2 CPU cores, CTranslate2 int8."""
TAIL_FRAMES = 200
"""Silence after the longest clip of a batch (2 s): trimmed exactly to the speech, Whisper
does not find its end (no end-of-text, loops)."""
FRAME_STEP = 100  # windows are whole seconds, so batches of similar clips share a shape
ENGLISH_MIN_FRAMES = MIN_FRAMES
"""Shortest batched window for an English-only checkpoint: 10 s too, as for every model.

An 8 s floor was tried 2026-12 on tiny.en (int8, beam 5, batches of 8): WER by floor
10/8/6/4 s 0.129/0.124/0.140/0.142 on 60 espeak-ng clips and 0.114/0.113/0.121/0.121 on 120,
6-14 % less CPU at 8 s; but the browser's fake-microphone clip lost 3 of 7 words at 8 s
("The plain land of the safely ...") and none at 10 s. A 0.005 corpus gain is noise beside
that, so the floor stays 10 s. Multilingual base lost words below 10 s too (60 clips,
language en: 0.090/0.099/0.114/0.117)."""


def window_frames(longest: int, floor: int = MIN_FRAMES) -> int:
    """Mel frames of the encoder window for a batch whose longest clip has ``longest`` frames.

    Whisper pads every clip to 30 s, so on a 3 s clip the encoder mostly works on silence.
    Both engines cut the window to the longest clip of the batch plus 2 s of silence, rounded
    up to whole seconds, at least ``floor`` (10 s unless the engine knows its model takes
    less, see :data:`ENGLISH_MIN_FRAMES`) and at most 30 s (whisper.cpp's ``audio_ctx`` idea).
    """
    padded = -(-(longest + TAIL_FRAMES) // FRAME_STEP) * FRAME_STEP
    return min(MAX_FRAMES, max(floor, padded))


@runtime_checkable
class Transcriber(Protocol):
    """A loaded Whisper model that turns batches of 16 kHz audio into transcripts."""

    engine: str
    """``"transformers"`` or ``"ctranslate2"``."""
    model_name: str
    """What the user asked for (alias, path or hub id)."""
    device: str
    """Where it runs: ``"cpu"`` or ``"cuda"``."""
    batch_size: int
    """How many clips it decodes together: callers hand it batches of this size, so results
    (and the files written from them) arrive as soon as each batch is done."""

    def transcribe(
        self, audios: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Transcribe every clip; the result list is in input order."""
        ...


def clean_text(text: str) -> str:
    """Whitespace-normalised text as it goes into a Transcript."""
    return " ".join(text.split())


def make_transcript(
    segments: list[Segment],
    *,
    language: str | None,
    duration: float,
    model: str,
    engine: str,
    language_probability: float | None = None,
    logprobs: tuple[TokenLogprob, ...] | None = None,
) -> Transcript:
    """Assemble a Transcript: drop empty segments, keep times inside ``[0, duration]``, renumber
    (every other segment field, such as ``avg_logprob``, is kept)."""
    kept = [s for s in segments if s.text]
    renumbered = tuple(
        replace(
            s,
            id=i,
            start=min(max(s.start, 0.0), duration),
            end=min(max(s.end, s.start, 0.0), duration),
        )
        for i, s in enumerate(kept)
    )
    text = clean_text(" ".join(s.text for s in renumbered))
    return Transcript(
        text=text,
        language=language,
        duration=duration,
        segments=renumbered,
        model=model,
        engine=engine,
        language_probability=language_probability,
        logprobs=logprobs,
    )


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (one printable character per byte), inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1)]
    printable += range(ord("\xae"), ord("\xff") + 1)
    chars = dict(zip(printable, printable, strict=True))
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def token_logprobs(pieces: Sequence[str], logprobs: Sequence[float]) -> tuple[TokenLogprob, ...]:
    """TokenLogprobs from Whisper's byte-level BPE pieces (``"\u0120Please"``) and log-probs.

    A piece's bytes are exact; its text is those bytes as UTF-8 (U+FFFD where a letter's bytes
    are split over two tokens). A probability of 0 is kept finite (log-prob -1e4) so
    the result stays valid JSON.
    """
    decoder = _byte_decoder()
    out: list[TokenLogprob] = []
    for piece, lp in zip(pieces, logprobs, strict=True):
        raw = bytes(decoder[c] for c in piece) if all(c in decoder for c in piece) else piece.encode("utf-8")
        value = 0.0 if math.isnan(lp) else min(0.0, max(float(lp), -1e4))
        out.append(TokenLogprob(token=raw.decode("utf-8", errors="replace"), logprob=value, bytes=tuple(raw)))
    return tuple(out)


def clamp_words(words: list[Word], start: float, end: float) -> tuple[Word, ...]:
    """Keep word times inside their segment and monotonic (alignment can wobble)."""
    out: list[Word] = []
    last = start
    for w in words:
        s = min(max(w.start, last), end)
        e = min(max(w.end, s), end)
        out.append(Word(start=round(s, 3), end=round(e, 3), word=w.word, probability=w.probability))
        last = s
    return tuple(out)
