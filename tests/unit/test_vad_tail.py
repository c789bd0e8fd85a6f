"""vad.missed_tail: the rest of a piece whose last sentence the model did not transcribe.

Transcripts here are built by hand from the times a real tiny.en decode gave on the bench's
5-minute file (a piece of 27.8 s whose last segment ended at 24.8 s, where its last, skipped
sentence started).
"""

from __future__ import annotations

from twi_asr.types import Segment, Transcript
from twi_asr.vad import Piece, merge_regions, missed_tail

SR = 16000


def s(seconds: float) -> int:
    return int(seconds * SR)


REGIONS = [(0.0, 3.1), (3.7, 6.8), (7.4, 10.2), (21.9, 24.1), (24.8, 27.8)]


def piece() -> Piece:
    offset = 77.4
    [p] = merge_regions([(s(offset + a), s(offset + b)) for a, b in REGIONS], total=s(400))
    return p


def part(*ends: float) -> Transcript:
    segments = tuple(
        Segment(id=i, start=0.0 if i == 0 else ends[i - 1], end=e, text="words") for i, e in enumerate(ends)
    )
    return Transcript(text="words", language="en", duration=27.8, segments=segments, model="m", engine="e")


def test_merge_keeps_the_regions_of_each_piece() -> None:
    p = piece()
    assert len(p.regions) == len(REGIONS)
    assert p.regions[0][0] == p.start and p.regions[-1][1] == p.end


def test_a_skipped_last_sentence_is_the_tail() -> None:
    p = piece()
    tail = missed_tail(p, part(3.7, 7.4, 10.8, 24.8))  # ends where the last region starts
    assert tail is not None
    assert (tail.start, tail.end) == (p.regions[-1][0], p.end)
    assert tail.regions == (p.regions[-1],)
    assert missed_tail(p, part(3.7, 7.4, 10.8, 24.3)) is not None  # ended before it: skipped too


def test_nothing_missed() -> None:
    p = piece()
    assert missed_tail(p, part(3.7, 7.4, 10.8, 24.8, 27.6)) is None  # the last sentence is there
    assert missed_tail(p, part(3.7, 7.4, 10.8, 24.1, 26.0)) is None  # its segment ended early
    assert missed_tail(p, part()) is None  # no segment at all: noise, not a skipped sentence
    short = Piece(
        p.start, p.regions[-1][0] + s(0.5), p.regions[:-1] + ((p.regions[-1][0], p.regions[-1][0] + s(0.5)),)
    )
    assert missed_tail(short, part(3.7, 7.4, 10.8, 24.8)) is None  # half a second is not a sentence
