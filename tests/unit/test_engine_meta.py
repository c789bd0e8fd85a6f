"""Decode-quality fields, token log-probabilities and workers: types, serialisation, plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twi_asr.engines import load_transcriber
from twi_asr.engines.base import make_transcript, token_logprobs
from twi_asr.errors import UsageError
from twi_asr.models import ResolvedModel
from twi_asr.types import Segment, TokenLogprob, TranscribeOptions, Transcript, Word
from twi_asr.vad import Piece, stitch


def _segment(i: int = 0, **extra: float) -> Segment:
    return Segment(id=i, start=0.5, end=1.5, text="ɛyɛ", words=(Word(0.5, 1.5, "ɛyɛ", 0.9),), **extra)


def _full() -> Transcript:
    return Transcript(
        text="ɛyɛ",
        language="en",
        duration=2.0,
        segments=(_segment(avg_logprob=-0.31, compression_ratio=0.98, no_speech_prob=0.02, temperature=0.0),),
        language_probability=0.93,
        logprobs=(
            TokenLogprob(" ", -0.1, (32,)),
            TokenLogprob("\ufffd", -0.2, (201,)),
            TokenLogprob("\ufffdy\ufffd", -0.3, (155, 121, 201, 155)),
        ),
    )


def test_defaults_keep_old_constructors() -> None:
    s = Segment(id=0, start=0.0, end=1.0, text="hi")
    assert (s.avg_logprob, s.compression_ratio, s.no_speech_prob, s.temperature) == (None,) * 4
    t = Transcript(text="hi", language="en", duration=1.0)
    assert t.language_probability is None and t.logprobs is None
    assert TranscribeOptions().token_logprobs is False


def test_round_trip_through_json() -> None:
    t = _full()
    d = json.loads(json.dumps(t.to_dict(), ensure_ascii=False))
    assert d["segments"][0]["avg_logprob"] == -0.31 and d["language_probability"] == 0.93
    assert d["logprobs"][2] == {"token": "\ufffdy\ufffd", "logprob": -0.3, "bytes": [155, 121, 201, 155]}
    assert Transcript.from_dict(d) == t
    assert bytes(b for lp in t.logprobs or () for b in lp.bytes).decode() == " ɛyɛ"


def test_unset_fields_are_left_out_and_omitted_keys_parse() -> None:
    t = Transcript(text="a", language="en", duration=1.0, segments=(Segment(0, 0.0, 1.0, "a"),))
    d = t.to_dict()
    assert "logprobs" not in d and "language_probability" not in d
    assert set(d["segments"][0]) == {"id", "start", "end", "text"}
    assert Transcript.from_dict(d) == t
    old = {
        "text": "a",
        "language": None,
        "duration": 1,
        "segments": [{"id": 0, "start": 0, "end": 1, "text": "a"}],
    }
    assert Transcript.from_dict(old).segments[0].avg_logprob is None
    no_bytes = {"text": "a", "language": None, "logprobs": [{"token": "a", "logprob": -1}]}
    assert Transcript.from_dict(no_bytes).logprobs == (TokenLogprob("a", -1.0, ()),)


def test_make_transcript_renumbers_and_keeps_the_fields() -> None:
    lps = (TokenLogprob(" x", -0.5, (32, 120)),)
    kept = _segment(7, avg_logprob=-0.2, compression_ratio=1.1, no_speech_prob=0.3, temperature=0.4)
    empty = Segment(id=3, start=0.0, end=0.1, text="")
    t = make_transcript(
        [empty, kept],
        language="en",
        duration=1.0,
        model="m",
        engine="e",
        language_probability=0.5,
        logprobs=lps,
    )
    (s,) = t.segments
    assert (s.id, s.end, s.avg_logprob, s.compression_ratio, s.no_speech_prob, s.temperature) == (
        0, 1.0, -0.2, 1.1, 0.3, 0.4,
    )  # fmt: skip
    assert s.words == kept.words and t.language_probability == 0.5 and t.logprobs == lps


def test_token_logprobs_from_byte_level_pieces() -> None:
    # "ɛ" is 0xC9 0x9B: GPT-2's byte alphabet writes those bytes as "É" and "Ľ"
    out = token_logprobs(
        ["\u0120Please", "\u00c9", "\u013d", "!"], [-0.25, float("-inf"), 0.0001, float("nan")]
    )
    assert [lp.token for lp in out] == [" Please", "\ufffd", "\ufffd", "!"]
    assert out[0].bytes == tuple(b" Please")
    assert bytes(out[1].bytes + out[2].bytes).decode() == "ɛ"
    assert [lp.logprob for lp in out] == [-0.25, -1e4, 0.0, 0.0]  # finite, never above 0


def test_stitch_joins_logprobs_and_keeps_segment_fields() -> None:
    def part(text: str, lp: float | None, prob: float) -> Transcript:
        seg = Segment(0, 0.0, 1.0, text, avg_logprob=lp, no_speech_prob=0.1, temperature=0.0)
        logprobs = (TokenLogprob(" " + text, lp, tuple(b" " + text.encode())),) if lp is not None else None
        return Transcript(
            text=text, language="en", duration=1.0, segments=(seg,), model="m", engine="e",
            language_probability=prob, logprobs=logprobs,
        )  # fmt: skip

    pieces = [Piece(0, 16000), Piece(32000, 48000)]
    whole = stitch(pieces, [part("one", -0.1, 0.9), part("two", -0.2, 0.5)], duration=3.0, language="en")
    assert [s.start for s in whole.segments] == [0.0, 2.0]
    assert [s.avg_logprob for s in whole.segments] == [-0.1, -0.2]
    assert all(s.no_speech_prob == 0.1 and s.temperature == 0.0 for s in whole.segments)
    assert [lp.token for lp in whole.logprobs or ()] == [" one", " two"]
    assert whole.language_probability == 0.9
    partial = stitch(pieces, [part("one", -0.1, 0.9), part("two", None, 0.5)], duration=3.0, language="en")
    assert partial.logprobs is None  # not a misleading half list


def test_transformers_refuses_workers(tmp_path: Path) -> None:
    model = ResolvedModel(name="hf", path=tmp_path, format="transformers", source=str(tmp_path))
    with pytest.raises(UsageError, match="workers=2.*ctranslate2"):
        load_transcriber(model, workers=2)


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"cpu_threads": -1}])
def test_bad_worker_counts(tmp_path: Path, kwargs: dict[str, int]) -> None:
    model = ResolvedModel(name="ct2", path=tmp_path, format="ctranslate2", source=str(tmp_path))
    with pytest.raises(UsageError):
        load_transcriber(model, **kwargs)
