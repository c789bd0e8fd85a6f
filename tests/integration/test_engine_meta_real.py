"""Decode-quality fields, token log-probabilities and concurrent workers on the real tiny.en weights."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.text import wer

from .conftest import Clip

pytest.importorskip("faster_whisper")


def _sane(transcripts: list, *, no_speech: bool) -> None:  # type: ignore[type-arg]
    for t in transcripts:
        assert t.segments, t
        for s in t.segments:
            assert s.avg_logprob is not None and s.avg_logprob <= 0, s
            assert s.compression_ratio is not None and s.compression_ratio > 0, s
            assert s.temperature is not None and 0.0 <= s.temperature <= 1.0, s
            if no_speech:
                assert s.no_speech_prob is not None and 0.0 <= s.no_speech_prob <= 1.0, s
        assert t.language_probability == 1.0  # English-only model: as faster-whisper reports it


def _logprobs_match(transcripts: list) -> None:  # type: ignore[type-arg]
    for t in transcripts:
        assert t.logprobs, t
        assert "".join(lp.token for lp in t.logprobs).split() == t.text.split()
        assert bytes(b for lp in t.logprobs for b in lp.bytes).decode().split() == t.text.split()
        assert all(lp.logprob <= 0 for lp in t.logprobs)
        assert sum(lp.logprob for lp in t.logprobs) / len(t.logprobs) > -2.0  # real scores, not filler


def test_ct2_fields_on_both_paths(ct2_engine, speech_clips: list[Clip]) -> None:  # type: ignore[no-untyped-def]
    audios = [decode_audio(c.path).samples for c in speech_clips[:3]]
    batched = ct2_engine.transcribe(audios, TranscribeOptions())
    _sane(batched, no_speech=True)
    assert all(s.temperature == 0.0 for t in batched for s in t.segments)
    alone = ct2_engine.transcribe(
        audios[:1], TranscribeOptions(word_timestamps=True)
    )  # faster-whisper's path
    _sane(alone, no_speech=True)
    assert batched[0].logprobs is None and alone[0].logprobs is None  # opt-in


def test_ct2_token_logprobs(ct2_engine, speech_clips: list[Clip]) -> None:  # type: ignore[no-untyped-def]
    audios = [decode_audio(c.path).samples for c in speech_clips[:3]]
    silence = np.zeros(3 * 16000, dtype=np.float32)
    with_lp = ct2_engine.transcribe([*audios, silence], TranscribeOptions(token_logprobs=True))
    _logprobs_match(with_lp[:3])
    assert with_lp[3].logprobs == () and with_lp[3].text == ""
    plain = ct2_engine.transcribe(audios, TranscribeOptions())
    assert [t.text for t in with_lp[:3]] == [t.text for t in plain]  # scoring changes no word
    for t in with_lp[:3]:  # the teacher-forced pass agrees with the beam's own average
        mean = sum(lp.logprob for lp in t.logprobs or ()) / len(t.logprobs or (1,))
        assert abs(mean - (t.segments[0].avg_logprob or 0.0)) < 0.35, (mean, t.segments[0])
    alone = ct2_engine.transcribe(audios[:1], TranscribeOptions(token_logprobs=True, word_timestamps=True))
    _logprobs_match(alone)


def test_hf_fields_and_token_logprobs(hf_engine, speech_clips: list[Clip]) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    audios = [decode_audio(c.path).samples for c in speech_clips[:3]]
    default = hf_engine.transcribe(audios, TranscribeOptions())
    _sane(default, no_speech=False)  # the ladder keeps scores: avg_logprob for free
    assert all(s.no_speech_prob is None for t in default for s in t.segments)
    with_lp = hf_engine.transcribe(audios, TranscribeOptions(token_logprobs=True, temperatures=(0.0,)))
    _logprobs_match(with_lp)
    assert [t.text for t in with_lp] == [t.text for t in default]


def test_ct2_two_workers_decode_at_once(tiny_en_ct2: Path, speech_clips: list[Clip], long_clip: Clip) -> None:
    """Two threads on a workers=2 engine: both right, and the short one does not wait for the long."""
    from twi_asr import load_transcriber

    engine = load_transcriber(str(tiny_en_ct2), engine="ctranslate2", workers=2, cpu_threads=1)
    assert engine.workers == 2
    short = decode_audio(speech_clips[0].path).samples
    long = decode_audio(long_clip.path).samples
    engine.transcribe([short])  # warm both code paths once
    t0 = time.perf_counter()
    alone = engine.transcribe([long])[0]
    long_s = time.perf_counter() - t0

    got: dict[str, tuple[str, float]] = {}
    errors: list[BaseException] = []

    def run(name: str, audio: np.ndarray) -> None:
        try:
            start = time.perf_counter()
            text = engine.transcribe([audio])[0].text
            got[name] = (text, time.perf_counter() - start)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("long", long))]
    threads[0].start()
    time.sleep(min(0.3, long_s / 4))  # the long one is decoding when the short one arrives
    threads.append(threading.Thread(target=run, args=("short", short)))
    threads[1].start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert wer(speech_clips[0].text, got["short"][0]) < 0.35, got["short"]
    assert wer(long_clip.text, got["long"][0]) < 0.35, got["long"]
    assert wer(alone.text, got["long"][0]) < 0.1  # concurrency changes (almost) no word
    # with one worker the short clip would wait for most of the long decode
    assert got["short"][1] < 0.6 * long_s, (got, long_s)
