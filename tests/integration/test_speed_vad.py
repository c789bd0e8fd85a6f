"""Long audio cut on silence (the default ``long_form="vad"``) on real speech and real tiny.en weights.

The ~70 s clip of the shared fixtures is 18 espeak sentences with 1 s of silence between them,
so where each sentence starts is known. The Silero VAD must cut only in the pauses; both
engines must be at least as accurate as their sequential long-form loop, and put every
segment (and word) at its place in the whole clip. No timings: see ``bench/engines.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio, load_transcriber
from twi_asr.text import normalize_twi, wer
from twi_asr.types import Segment
from twi_asr.vad import MAX_PIECE_S, split_on_silence

from .conftest import SENTENCES, Clip

pytestmark = pytest.mark.slow

SR = 16000


def _seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return float(out.stdout.strip())


@pytest.fixture(scope="module")
def sentence_starts(long_clip: Clip) -> list[float]:
    """Where each sentence starts in the long clip (its parts sit next to it, 1 s apart)."""
    folder = long_clip.path.parent
    starts, t = [], 0.0
    for i in range(len(SENTENCES)):
        starts.append(t)
        t += _seconds(folder / f"p{i:02d}.wav") + 1.0
    return starts


@pytest.fixture(scope="module")
def long_audio(long_clip: Clip) -> np.ndarray:
    return decode_audio(long_clip.path).samples


def test_pieces_are_cut_in_the_pauses(long_audio: np.ndarray, sentence_starts: list[float]) -> None:
    pieces = split_on_silence(long_audio)
    assert len(pieces) >= 3  # ~70 s in pieces of at most 28 s
    assert all(0 < p.end - p.start <= MAX_PIECE_S * SR for p in pieces)
    assert all(a.end <= b.start for a, b in zip(pieces, pieces[1:], strict=False))
    assert pieces[0].start / SR < 0.5 and pieces[-1].end / SR > len(long_audio) / SR - 1.5
    ends = [*sentence_starts[1:], len(long_audio) / SR]  # each sentence is followed by 1 s of silence
    for p in pieces:  # no sentence is cut: each boundary lies in a pause, not in speech
        for edge in (p.start / SR, p.end / SR):
            inside = [
                start
                for start, end in zip(sentence_starts, ends, strict=True)
                if start + 0.3 < edge < end - 1.3
            ]
            assert not inside, (edge, inside)


@pytest.mark.parametrize("engine_name", ["ctranslate2", "transformers"])
def test_vad_is_as_accurate_as_sequential_and_timestamps_hold(
    engine_name: str,
    tiny_en_ct2: Path,
    tiny_en_hf: Path,
    long_clip: Clip,
    long_audio: np.ndarray,
    sentence_starts: list[float],
) -> None:
    model = tiny_en_ct2 if engine_name == "ctranslate2" else tiny_en_hf
    split = load_transcriber(str(model), engine=engine_name)
    assert getattr(split, "long_form", None) == "vad"  # the default where faster-whisper is installed
    sequential = load_transcriber(str(model), engine=engine_name, long_form="sequential")
    short = long_audio[: 4 * SR]
    a, s4 = split.transcribe([long_audio, short], TranscribeOptions())
    [b] = sequential.transcribe([long_audio], TranscribeOptions())
    wa, wb = wer(long_clip.text, a.text), wer(long_clip.text, b.text)
    print(f"{engine_name}: WER split on silence {wa:.3f}, sequential {wb:.3f}")
    assert wa <= wb + 0.02, (a.text, b.text)
    assert s4.duration == pytest.approx(4.0) and s4.text  # a short clip in the same call
    assert a.duration == pytest.approx(len(long_audio) / SR)
    assert [x.id for x in a.segments] == list(range(len(a.segments)))
    for prev, nxt in zip(a.segments, a.segments[1:], strict=False):
        assert prev.start <= prev.end <= nxt.start + 1e-6, (prev, nxt)
    # the pieces' offsets are right: each segment's words were spoken in the sentences its time
    # span overlaps (a piece's offset missed would put them ~27 s away from those sentences)
    assert _placed(a.segments, sentence_starts, len(long_audio) / SR) >= 0.9


def _placed(segments: tuple[Segment, ...], starts: list[float], duration: float) -> float:
    """The share of segments whose words mostly belong to the sentences spoken at their time."""
    ends = [*(t - 1.0 for t in starts[1:]), duration - 1.0]
    good = 0
    for seg in segments:
        spoken = {
            w for sentence, start, end in zip(SENTENCES, starts, ends, strict=True)
            if start - 0.5 < seg.end and seg.start < end + 0.5
            for w in normalize_twi(sentence).split()
        }  # fmt: skip
        words = normalize_twi(seg.text).split()
        good += bool(words) and sum(w in spoken for w in words) >= 0.6 * len(words)
    return good / max(1, len(segments))


def test_word_times_are_moved_with_their_piece(
    tiny_en_ct2: Path, long_audio: np.ndarray, sentence_starts: list[float]
) -> None:
    engine = load_transcriber(str(tiny_en_ct2), engine="ctranslate2")
    [r] = engine.transcribe([long_audio], TranscribeOptions(word_timestamps=True))
    words = r.words
    assert len(words) > 100
    assert all(0.0 <= w.start <= w.end <= r.duration + 1e-6 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    late = [w for w in words if w.start > 40.0]  # words in the later pieces are not piece-relative
    assert late and words[-1].end > sentence_starts[-1]
    for seg in r.segments:
        for w in seg.words or ():
            assert seg.start - 1e-6 <= w.start <= w.end <= seg.end + 1e-6, (seg, w)
    # each word was spoken in a sentence its time overlaps
    word_segments = tuple(Segment(i, w.start, w.end, w.word) for i, w in enumerate(words))
    assert _placed(word_segments, sentence_starts, r.duration) >= 0.9
