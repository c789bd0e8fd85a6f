"""Long audio cut on silence (twi_asr.vad), its pure parts: joining speech regions into pieces,
stitching the pieces' transcripts back with their offsets, and the split/decode/stitch plan.
No model: the VAD itself and the engines are exercised in tests/integration/test_speed_vad.py."""

from __future__ import annotations

import numpy as np
import pytest

from twi_asr import vad
from twi_asr.errors import DependencyMissingError, UsageError
from twi_asr.types import Segment, Transcript, Word
from twi_asr.vad import MAX_PIECE_S, Piece, merge_regions, stitch, transcribe_split

SR = 16000
LIMIT = int(MAX_PIECE_S * SR)


def s(seconds: float) -> int:
    return int(seconds * SR)


def test_regions_join_until_the_limit() -> None:
    regions = [(s(0.5), s(5)), (s(6), s(12)), (s(13), s(27)), (s(29), s(40)), (s(41), s(50))]
    pieces = merge_regions(regions, total=s(60))
    # 0.5..27 fits in 28 s; 29 would make it 39.5 s: a new piece from 29 to 50 (21 s)
    assert pieces == [Piece(s(0.5), s(27)), Piece(s(29), s(50))]
    assert all(p.end - p.start <= LIMIT for p in pieces)


def test_a_region_longer_than_the_limit_is_cut_and_bounds_are_kept() -> None:
    pieces = merge_regions([(-100, s(70))], total=s(65))
    assert pieces == [Piece(0, LIMIT), Piece(LIMIT, 2 * LIMIT), Piece(2 * LIMIT, s(65))]
    assert merge_regions([], total=s(60)) == []
    assert merge_regions([(s(5), s(5))], total=s(60)) == []  # empty region dropped


def test_pieces_never_overlap_and_stay_in_order() -> None:
    rng = np.random.default_rng(1)
    edges = np.sort(rng.choice(s(600), size=200, replace=False))
    regions = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    pieces = merge_regions(regions, total=s(600))
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.end <= b.start
    assert all(0 < p.end - p.start <= LIMIT for p in pieces)
    covered = sum(p.end - p.start for p in pieces)
    speech = sum(b - a for a, b in regions)
    assert covered >= speech  # every region is inside a piece


def _t(segments: list[Segment], duration: float, language: str = "en") -> Transcript:
    return Transcript(
        text=" ".join(x.text for x in segments),
        language=language,
        duration=duration,
        segments=tuple(segments),
        model="m",
        engine="e",
    )


def test_stitch_moves_segments_and_words_by_the_piece_offset() -> None:
    pieces = [Piece(s(1), s(20)), Piece(s(40), s(60))]
    first = _t([Segment(0, 0.0, 5.0, "one", (Word(0.5, 1.0, "one"),))], 19.0)
    second = _t([Segment(0, 2.0, 4.0, "two"), Segment(1, 4.0, 30.0, "three")], 20.0)  # runs past its end
    out = stitch(pieces, [first, second], duration=70.0, language="en")
    assert [(x.id, x.start, x.end, x.text) for x in out.segments] == [
        (0, 1.0, 6.0, "one"),
        (1, 42.0, 44.0, "two"),
        (2, 44.0, 60.0, "three"),  # kept inside its piece
    ]
    assert out.segments[0].words == (Word(1.5, 2.0, "one"),)
    assert out.text == "one two three" and out.duration == 70.0
    assert (out.language, out.model, out.engine) == ("en", "m", "e")


def test_transcribe_split_decodes_everything_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short clips pass through; each long clip becomes its pieces; one decode call; input order."""
    long_a = np.ones(s(70), dtype=np.float32)
    long_b = np.full(s(40), 2.0, dtype=np.float32)
    quiet = np.full(s(35), 3.0, dtype=np.float32)
    short = np.full(s(3), 4.0, dtype=np.float32)
    plans = {1.0: [Piece(s(1), s(25)), Piece(s(30), s(55))], 2.0: [Piece(s(10), s(38))], 3.0: []}
    monkeypatch.setattr(vad, "split_on_silence", lambda audio: plans[float(audio[0])])
    calls: list[list[tuple[float, float]]] = []

    def decode(work: list[np.ndarray]) -> list[Transcript]:
        calls.append([(float(w[0]), len(w) / SR) for w in work])
        return [_t([Segment(0, 0.0, len(w) / SR, f"v{w[0]:.0f}")], len(w) / SR) for w in work]

    out = transcribe_split(
        [short, long_a, quiet, long_b],
        decode,
        empty=lambda d: _t([], d),
        is_long=lambda a: len(a) > s(30),
    )
    assert calls == [[(4.0, 3.0), (1.0, 24.0), (1.0, 25.0), (2.0, 28.0)]]
    assert [t.duration for t in out] == [3.0, 70.0, 35.0, 40.0]
    assert out[0].text == "v4"
    assert [(x.start, x.end) for x in out[1].segments] == [(1.0, 25.0), (30.0, 55.0)]
    assert out[1].text == "v1 v1"
    assert out[2].text == "" and out[2].segments == ()
    assert [(x.start, x.end) for x in out[3].segments] == [(10.0, 38.0)]


def test_resolve_long_form(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="long-form"):
        vad.resolve_long_form("chunked")
    assert vad.resolve_long_form("sequential") == "sequential"
    monkeypatch.setattr(vad, "vad_available", lambda: False)
    assert vad.resolve_long_form("auto") == "sequential"
    with pytest.raises(DependencyMissingError, match="onnxruntime"):
        vad.resolve_long_form("vad")
    monkeypatch.setattr(vad, "vad_available", lambda: True)
    assert vad.resolve_long_form("auto") == "vad"
