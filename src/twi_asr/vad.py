"""Long audio split on silence into pieces of at most ~30 s, decoded as a batch, stitched back.

Whisper reads 30 s at a time. For a longer clip the engines can either seek through it
window after window (the sequential long-form loop, each window waiting for the previous
one's text), or cut it where nobody speaks and hand the pieces to the batched short-form
path together, like faster-whisper's ``BatchedInferencePipeline``. This module does the
cutting and the stitching; the engines choose (``long_form="vad"`` or ``"sequential"``).

Speech is found by the Silero VAD model that faster-whisper ships (ONNX, run through
onnxruntime on one thread). Pieces are contiguous spans of the original audio, from the start
of one speech region to the end of a later one, so the pauses inside a piece are kept and a
segment's time in the piece plus the piece's start is its time in the clip. Silence between
pieces is not decoded (Whisper tends to invent text there anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .types import Segment, Transcript, Word

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_PIECE_S = 28.0
"""Longest piece: 2 s short of Whisper's window, so the batched window keeps its 2 s of
silence after the speech (without it Whisper often misses the end; see engines.base)."""
MIN_SILENCE_MS = 160  # a pause this long may end a speech region (faster-whisper's batched default)
SPEECH_PAD_MS = 200  # speech regions are widened this much each side, so no word is clipped
LONG_FORM_MODES = ("vad", "sequential")
VAD_CHUNK_S = 600.0
"""Audio the VAD reads at once, which bounds its working memory (see :func:`speech_regions`)."""


MISSED_GAP_S = 0.3
"""A speech region of a piece that starts no earlier than this before the piece's last segment
ends was not transcribed (see :func:`missed_tail`): Whisper ends the last segment it writes
where the next sentence starts (5-minute file, tiny.en: a segment ending at 24.8 s, the
region it skipped starting at 24.8 s)."""
MIN_TAIL_S = 1.0
"""Shortest missed tail decoded again: less is a breath or a click, not a sentence."""


@dataclass(frozen=True)
class Piece:
    """A span ``[start, end)`` of a clip, in samples, and the speech regions inside it."""

    start: int
    end: int
    regions: tuple[tuple[int, int], ...] = field(default=(), compare=False)
    """The VAD's speech spans in the piece (samples in the clip), in order; not part of its
    identity (a piece is its span)."""

    @property
    def offset(self) -> float:
        """Where the piece starts in the clip, in seconds."""
        return self.start / SAMPLE_RATE


def vad_available() -> bool:
    """Whether the Silero VAD can run here (faster-whisper and onnxruntime installed)."""
    try:
        import faster_whisper.vad  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_long_form(mode: str) -> str:
    """``vad`` or ``sequential`` for an engine's ``long_form`` argument (``auto``: vad if it can run)."""
    from .errors import DependencyMissingError, UsageError

    if mode not in ("auto", *LONG_FORM_MODES):
        raise UsageError(f"long-form mode {mode!r}: choose auto, vad or sequential")
    if mode == "auto":
        return "vad" if vad_available() else "sequential"
    if mode == "vad" and not vad_available():
        raise DependencyMissingError(
            "splitting long audio on silence needs faster-whisper and onnxruntime: pip install 'twi-asr[ct2]'"
        )
    return mode


def speech_regions(audio: np.ndarray) -> list[tuple[int, int]]:
    """Speech spans of ``audio`` (16 kHz float32) in samples, each at most :data:`MAX_PIECE_S` long.

    The VAD runs on :data:`VAD_CHUNK_S` at a time: on a whole 3-hour upload faster-whisper's
    VAD held about 2.5x the samples again (padded and windowed copies). A region that spans a
    chunk edge comes back as two adjacent regions, which :func:`merge_regions` joins again
    whenever they fit in one piece.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        max_speech_duration_s=MAX_PIECE_S, min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS
    )
    step = int(VAD_CHUNK_S * SAMPLE_RATE)
    regions: list[tuple[int, int]] = []
    for first in range(0, len(audio), step):
        found = get_speech_timestamps(audio[first : first + step], options)
        regions.extend((first + int(r["start"]), first + int(r["end"])) for r in found)
    return regions


def merge_regions(
    regions: Sequence[tuple[int, int]], total: int, max_samples: int = int(MAX_PIECE_S * SAMPLE_RATE)
) -> list[Piece]:
    """Greedily join consecutive speech regions into pieces of at most ``max_samples``.

    A piece runs from the start of its first region to the end of its last, pauses included;
    a region longer than the limit (the VAD cuts at it, so only by its padding) is cut at it.
    ``total`` (the clip's length) bounds every piece.
    """
    pieces: list[Piece] = []
    start = end = -1
    inside: list[tuple[int, int]] = []
    for r_start, r_end in regions:
        r_start, r_end = max(0, r_start), min(total, r_end)
        if r_end <= r_start:
            continue
        if start >= 0 and r_end - start <= max_samples:
            end = max(end, r_end)
            inside.append((r_start, r_end))
            continue
        if start >= 0:
            pieces.append(Piece(start, end, tuple(inside)))
        start, end = r_start, r_end
        while end - start > max_samples:
            pieces.append(Piece(start, start + max_samples, ((start, start + max_samples),)))
            start += max_samples
        inside = [(start, end)]
    if start >= 0:
        pieces.append(Piece(start, end, tuple(inside)))
    return pieces


def missed_tail(piece: Piece, part: Transcript) -> Piece | None:
    """The end of ``piece`` that its transcript ``part`` left out, if a whole speech region was.

    Decoded in a window with only ~2 s of silence after it, Whisper sometimes ends a long piece
    before its last sentence (it expects a next window, as in its sequential loop, which goes on
    from its last timestamp). When a speech region starts at most :data:`MISSED_GAP_S` before
    the last segment ends (or after it) and at least :data:`MIN_TAIL_S` of the piece follows,
    that rest (from the region's start) is a piece of its own to decode. None when nothing was
    missed, or when the piece gave no segment at all (noise the model rightly skipped).
    """
    if not part.segments:
        return None
    heard = piece.start + int(part.segments[-1].end * SAMPLE_RATE)
    gap = int(MISSED_GAP_S * SAMPLE_RATE)
    rest = [r for r in piece.regions if r[0] >= heard - gap]
    if not rest or piece.end - rest[0][0] < MIN_TAIL_S * SAMPLE_RATE:
        return None
    return Piece(rest[0][0], piece.end, tuple(rest))


def split_on_silence(audio: np.ndarray) -> list[Piece]:
    """The pieces to decode for one long clip (empty when the VAD hears no speech)."""
    return merge_regions(speech_regions(audio), len(audio))


def _shift_words(words: tuple[Word, ...] | None, by: float) -> tuple[Word, ...] | None:
    if words is None:
        return None
    return tuple(replace(w, start=round(w.start + by, 3), end=round(w.end + by, 3)) for w in words)


def stitch(
    pieces: Sequence[Piece], parts: Sequence[Transcript], *, duration: float, language: str | None
) -> Transcript:
    """One transcript for the whole clip: each piece's segments (and words) moved by its offset.

    Segments keep their other fields (avg_logprob...); the pieces' token ``logprobs`` are
    joined in order (None if any piece has none); ``language_probability`` is the first
    piece's.
    """
    from .engines.base import make_transcript

    segments: list[Segment] = []
    for piece, part in zip(pieces, parts, strict=True):
        piece_end = piece.end / SAMPLE_RATE
        for s in part.segments:
            start = round(min(s.start + piece.offset, piece_end), 3)
            end = round(min(s.end + piece.offset, piece_end), 3)
            segments.append(replace(s, start=start, end=end, words=_shift_words(s.words, piece.offset)))
    first = parts[0] if parts else None
    logprobs = None
    if parts and all(p.logprobs is not None for p in parts):
        logprobs = tuple(lp for p in parts for lp in p.logprobs or ())
    return make_transcript(
        segments,
        language=language if language is not None else (first.language if first else None),
        duration=duration,
        model=first.model if first else "",
        engine=first.engine if first else "",
        language_probability=first.language_probability if first else None,
        logprobs=logprobs,
    )


def transcribe_split(
    audios: Sequence[np.ndarray],
    decode: Callable[[list[np.ndarray]], list[Transcript]],
    *,
    empty: Callable[[float], Transcript],
    is_long: Callable[[np.ndarray], bool],
) -> list[Transcript]:
    """Transcribe ``audios`` with every long clip cut into pieces, all decoded by one ``decode`` call.

    ``decode`` gets the short clips and every piece together (so pieces of different clips
    share batches) and returns one transcript per input, in order. ``empty(duration)`` makes
    the result for a long clip with no speech.
    """
    work: list[np.ndarray] = []
    plan: list[tuple[int, list[Piece]] | int] = []  # short clip: its index in work; long: (first, pieces)
    for audio in audios:
        if is_long(audio):
            pieces = split_on_silence(audio)
            log.debug("%.1f s clip: %d pieces on silence", len(audio) / SAMPLE_RATE, len(pieces))
            plan.append((len(work), pieces))
            work.extend(audio[p.start : p.end] for p in pieces)
        else:
            plan.append(len(work))
            work.append(audio)
    done = decode(work) if work else []
    # pieces whose last sentence was not transcribed: their rest, decoded together, once
    tails: dict[int, Piece] = {}  # index of the piece's part in work -> its missed tail
    for step in plan:
        if not isinstance(step, int):
            first, pieces = step
            for k, piece in enumerate(pieces):
                tail = missed_tail(piece, done[first + k])
                if tail is not None:
                    tails[first + k] = tail
    if tails:
        log.debug("%d pieces ended before their last speech: decoding their rest", len(tails))
        tail_parts = dict(
            zip(tails, decode([_cut(audios, plan, i, t) for i, t in tails.items()]), strict=True)
        )
    out: list[Transcript] = []
    for audio, step in zip(audios, plan, strict=True):
        if isinstance(step, int):
            out.append(done[step])
            continue
        first, pieces = step
        duration = len(audio) / SAMPLE_RATE
        if not pieces:
            out.append(empty(duration))
            continue
        spans: list[Piece] = []
        parts: list[Transcript] = []
        for k, piece in enumerate(pieces):
            spans.append(piece)
            parts.append(done[first + k])
            if first + k in tails:
                spans.append(tails[first + k])
                parts.append(tail_parts[first + k])
        out.append(stitch(spans, parts, duration=duration, language=parts[0].language))
    return out


def _cut(
    audios: Sequence[np.ndarray], plan: Sequence[tuple[int, list[Piece]] | int], index: int, piece: Piece
) -> np.ndarray:
    """The samples of ``piece`` of the long clip whose part sits at ``index`` of the work list."""
    for audio, step in zip(audios, plan, strict=True):
        if not isinstance(step, int) and step[0] <= index < step[0] + len(step[1]):
            return audio[piece.start : piece.end]
    raise ValueError(f"no long clip holds work item {index}")
