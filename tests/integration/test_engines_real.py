"""Both engines on the real tiny.en weights and real espeak-ng speech.

Accuracy claims here come from real weights only: WER against the known text
(normalised with the Twi-aware normaliser), agreement between the engines,
long-form segment timestamps, word timestamps.
"""

from __future__ import annotations

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.text import normalize_twi, wer

from .conftest import Clip

pytestmark = pytest.mark.slow

MAX_WER = 0.35


def _run(engine, clips: list[Clip], options: TranscribeOptions | None = None):  # type: ignore[no-untyped-def]
    return engine.transcribe([decode_audio(c.path).samples for c in clips], options or TranscribeOptions())


@pytest.mark.parametrize("engine_fixture", ["ct2_engine", "hf_engine"])
def test_wer_below_threshold(
    engine_fixture: str, speech_clips: list[Clip], request: pytest.FixtureRequest
) -> None:
    engine = request.getfixturevalue(engine_fixture)
    results = _run(engine, speech_clips)
    assert len(results) == len(speech_clips)
    score = wer([c.text for c in speech_clips], [r.text for r in results])
    print(f"{engine.engine} WER on {len(speech_clips)} espeak clips: {score:.3f}")
    assert score < MAX_WER, [(c.text, r.text) for c, r in zip(speech_clips, results, strict=True)]
    for clip, r in zip(speech_clips, results, strict=True):
        assert r.language == "en"
        assert r.engine == engine.engine
        assert abs(r.duration - decode_audio(clip.path).duration) < 1e-6
        assert r.segments and r.segments[0].start >= 0.0 and r.segments[-1].end <= r.duration + 1e-6


def test_engines_agree(ct2_engine, hf_engine, speech_clips: list[Clip]) -> None:  # type: ignore[no-untyped-def]
    a = [r.text for r in _run(ct2_engine, speech_clips)]
    b = [r.text for r in _run(hf_engine, speech_clips)]
    disagreement = wer(a, b)
    print(f"ctranslate2 vs transformers disagreement (WER between them): {disagreement:.3f}")
    assert disagreement < 0.2, list(zip(a, b, strict=True))


@pytest.mark.parametrize("engine_fixture", ["ct2_engine", "hf_engine"])
def test_long_clip_segments(engine_fixture: str, long_clip: Clip, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(engine_fixture)
    audio = decode_audio(long_clip.path)
    assert 65.0 < audio.duration < 90.0
    [r] = engine.transcribe([audio.samples], TranscribeOptions())
    segs = r.segments
    assert len(segs) >= 8
    for s in segs:
        assert 0.0 <= s.start <= s.end <= audio.duration + 1e-6, s
    for prev, nxt in zip(segs, segs[1:], strict=False):
        assert nxt.start >= prev.end - 0.05, (prev, nxt)  # ordered, not overlapping
    assert segs[0].start < 2.0
    assert segs[-1].end > audio.duration - 6.0  # covers the speech to the end
    assert sum(s.end - s.start for s in segs) > 0.6 * audio.duration
    score = wer(long_clip.text, r.text)
    print(f"{engine.engine} long clip ({audio.duration:.1f} s): {len(segs)} segments, WER {score:.3f}")
    assert score < MAX_WER


@pytest.mark.parametrize("engine_fixture", ["ct2_engine", "hf_engine"])
def test_word_timestamps(
    engine_fixture: str, speech_clips: list[Clip], request: pytest.FixtureRequest
) -> None:
    engine = request.getfixturevalue(engine_fixture)
    [r] = _run(engine, speech_clips[:1], TranscribeOptions(word_timestamps=True))
    words = r.words
    assert len(words) >= 6
    joined = normalize_twi(" ".join(w.word for w in words))
    assert joined == normalize_twi(r.text)
    for w in words:
        assert 0.0 <= w.start <= w.end <= r.duration + 1e-6
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert words[-1].end - words[0].start > 0.5 * r.duration  # words spread over the clip, not piled up


@pytest.mark.parametrize("engine_fixture", ["ct2_engine", "hf_engine"])
def test_silence_gives_empty_transcript(engine_fixture: str, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(engine_fixture)
    [r] = engine.transcribe([np.zeros(16000 * 3, dtype=np.float32)], TranscribeOptions())
    assert r.text == ""
    assert r.segments == ()
    assert r.duration == pytest.approx(3.0)


def test_batch_matches_one_by_one(tiny_en_hf, hf_engine, speech_clips: list[Clip]) -> None:  # type: ignore[no-untyped-def]
    """Batched generation must not mix clips up: each result belongs to its own audio."""
    from twi_asr import load_transcriber

    batched = load_transcriber(str(tiny_en_hf), engine="transformers", batch_size=4)
    single_engine = load_transcriber(str(tiny_en_hf), engine="transformers", batch_size=1)
    assert batched.batch_size == 4 and single_engine.batch_size == 1
    assert hf_engine.batch_size == 4  # the CPU default since windows are cut to the clips
    batch = [r.text for r in _run(batched, speech_clips[:4])]
    single = [r.text for r in _run(single_engine, speech_clips[:4])]
    assert wer(single, batch) < 0.1, list(zip(single, batch, strict=True))
