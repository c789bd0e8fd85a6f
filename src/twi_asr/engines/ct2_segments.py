"""The CTranslate2 engine's pure parts: generated token ids -> timed segments, and their score.

No model and no faster-whisper here, so the rules that turn one ``generate`` result into
:class:`~twi_asr.types.Segment` objects can be tested on plain lists of ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..types import Segment
from .base import clean_text

TIME_PRECISION = 0.02  # seconds per timestamp token


def tokens_to_segments(
    tokens: Sequence[int],
    timestamp_begin: int,
    eot: int,
    decode: Callable[[list[int]], str],
    duration: float,
    positions: list[int] | None = None,
) -> list[Segment]:
    """Split one generated sequence (text and timestamp tokens) into timed segments.

    Ids ``>= timestamp_begin`` are timestamps at ``(id - timestamp_begin) * 0.02`` s. A
    timestamp after text closes a segment; the next one (often the same time) opens the
    following segment. Text with no opening timestamp starts where the previous segment
    ended (0 at first); a trailing text run without a closing timestamp ends at ``duration``.
    Generation stops at ``eot``; other special tokens (ids between ``eot`` and the
    timestamps) are not text. Segments with no text after ``decode`` are dropped, and so are
    segments that start at or after ``duration``: they lie in the silence padded after the
    clip (where Whisper sometimes repeats the last sentence). Times are kept inside
    ``[0, duration]``. ``positions``, when given, receives the index in ``tokens`` of every
    text token of the kept segments, in order.
    """
    segments: list[Segment] = []
    text: list[int] = []
    at: list[int] = []
    start = 0.0

    def close(end: float) -> None:
        words = clean_text(decode(text))
        if words and start < duration:
            s = min(max(start, 0.0), duration)
            e = min(max(end, s), duration)
            segments.append(Segment(id=len(segments), start=round(s, 3), end=round(e, 3), text=words))
            if positions is not None:
                positions.extend(at)
        text.clear()
        at.clear()

    for k, token in enumerate(tokens):
        if token == eot:
            break
        if token >= timestamp_begin:
            time = (token - timestamp_begin) * TIME_PRECISION
            if text:
                close(time)
            start = time  # opens the next segment (a second timestamp moves it)
        elif token < eot:
            text.append(token)
            at.append(k)
    if text:
        close(duration)
    return segments


def _avg_logprob(score: float, seq_len: int) -> float:
    """faster-whisper's average log-probability of a beam result (length penalty 1)."""
    return score * seq_len / (seq_len + 1)
