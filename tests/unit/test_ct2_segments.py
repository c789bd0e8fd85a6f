"""The CTranslate2 engine's batched path, its pure parts: generated tokens -> timed segments, the
window each batch is padded to, and Whisper's no-speech and fallback rules. No model, no
faster-whisper."""

from __future__ import annotations

import pytest

from twi_asr.engines.ctranslate2 import (
    MAX_FRAMES,
    MIN_FRAMES,
    CTranslate2Transcriber,
    _avg_logprob,
    tokens_to_segments,
    window_frames,
)
from twi_asr.types import Segment, TranscribeOptions

# tiny.en's layout: text ids < EOT < other special tokens < TB (<|0.00|>)
EOT = 50256
SOT = 50257
TB = 50363
VOCAB = {1: " The", 2: " cat", 3: " sat.", 4: " It", 5: " purred.", 6: "  ", 7: " again"}


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


def ts(seconds: float) -> int:
    return TB + round(seconds / 0.02)


def segs(tokens: list[int], duration: float = 10.0) -> list[tuple[float, float, str]]:
    out = tokens_to_segments(tokens, TB, EOT, decode, duration)
    assert [s.id for s in out] == list(range(len(out)))
    assert all(isinstance(s, Segment) and s.words is None for s in out)
    return [(s.start, s.end, s.text) for s in out]


def test_timestamp_pairs_delimit_segments() -> None:
    tokens = [ts(0.0), 1, 2, 3, ts(1.5), ts(1.5), 4, 5, ts(2.84), EOT]
    assert segs(tokens) == [(0.0, 1.5, "The cat sat."), (1.5, 2.84, "It purred.")]


def test_times_are_token_offsets_times_twenty_ms() -> None:
    [(start, end, _)] = segs([TB + 13, 1, TB + 87])
    assert (start, end) == (0.26, 1.74)


def test_a_gap_between_segments_is_kept() -> None:
    tokens = [ts(0.0), 1, 2, ts(1.0), ts(2.5), 4, 5, ts(3.0)]
    assert segs(tokens) == [(0.0, 1.0, "The cat"), (2.5, 3.0, "It purred.")]


def test_single_timestamp_between_segments_closes_one_and_opens_the_next() -> None:
    assert segs([ts(0.0), 1, 2, ts(1.0), 4, 5, ts(2.0)]) == [(0.0, 1.0, "The cat"), (1.0, 2.0, "It purred.")]


def test_trailing_text_without_a_closing_timestamp_ends_at_the_clip_end() -> None:
    assert segs([ts(0.0), 1, 2, 3, EOT], duration=3.3) == [(0.0, 3.3, "The cat sat.")]
    tokens = [ts(0.0), 1, 2, ts(1.2), ts(1.2), 4, 5]
    assert segs(tokens, duration=2.5) == [(0.0, 1.2, "The cat"), (1.2, 2.5, "It purred.")]


def test_text_without_any_timestamp_spans_the_clip() -> None:
    assert segs([1, 2, 3], duration=2.0) == [(0.0, 2.0, "The cat sat.")]


@pytest.mark.parametrize(
    "tokens", [[], [EOT], [ts(0.0)], [ts(0.0), ts(1.0)], [ts(0.0), ts(1.0), ts(1.0), ts(2.0)]]
)
def test_empty_and_only_timestamps_give_no_segments(tokens: list[int]) -> None:
    assert segs(tokens) == []


def test_whitespace_only_text_is_no_segment() -> None:
    assert segs([ts(0.0), 6, ts(1.0), ts(1.0), 1, ts(2.0)]) == [(1.0, 2.0, "The")]


def test_generation_stops_at_end_of_text() -> None:
    assert segs([ts(0.0), 1, ts(1.0), EOT, ts(1.0), 2, ts(2.0)]) == [(0.0, 1.0, "The")]


def test_other_special_tokens_are_not_text() -> None:
    assert segs([ts(0.0), 1, SOT, 2, TB - 1, ts(1.0)]) == [(0.0, 1.0, "The cat")]


def test_times_stay_inside_the_clip() -> None:
    # an end past the clip is cut to its end; an end before the start is moved up to it
    assert segs([ts(0.0), 1, ts(5.0)], duration=3.0) == [(0.0, 3.0, "The")]
    assert segs([ts(1.0), 1, ts(0.5)], duration=3.0) == [(1.0, 1.0, "The")]


def test_segments_in_the_padding_after_the_clip_are_dropped() -> None:
    """Batched windows are padded with silence; Whisper sometimes repeats itself in it."""
    tokens = [ts(0.0), 1, 2, 3, ts(2.4), ts(2.6), 1, 2, 3, ts(4.0), ts(4.0), 7]
    assert segs(tokens, duration=2.5) == [(0.0, 2.4, "The cat sat.")]
    assert segs([ts(0.0), 1, ts(2.5), 7], duration=2.5) == [(0.0, 2.5, "The")]


def test_whitespace_in_text_is_normalised() -> None:
    assert segs([ts(0.0), 1, 6, 2, ts(1.0)]) == [(0.0, 1.0, "The cat")]


def test_times_are_rounded_to_milliseconds() -> None:
    [(start, end, _)] = segs([ts(0.0), 1], duration=2.3456789)
    assert (start, end) == (0.0, 2.346)


@pytest.mark.parametrize(
    ("longest", "expected"),
    [
        (0, MIN_FRAMES),
        (301, MIN_FRAMES),  # a 3 s clip still gets a 10 s window
        (800, MIN_FRAMES),
        (801, 1100),  # + 2 s of silence, rounded up to whole seconds
        (1234, 1500),
        (2800, MAX_FRAMES),
        (2801, MAX_FRAMES),  # never past Whisper's 30 s
        (3001, MAX_FRAMES),
    ],
)
def test_window_frames(longest: int, expected: int) -> None:
    assert window_frames(longest) == expected


def test_avg_logprob_is_faster_whispers() -> None:
    """CTranslate2's beam score is cum_logprob / seq_len (length penalty 1); faster-whisper divides
    the sum by seq_len + 1 (the end-of-text token)."""
    assert _avg_logprob(-0.5, 9) == pytest.approx(-0.5 * 9 / 10)
    assert _avg_logprob(-0.5, 0) == 0.0


DEFAULTS = TranscribeOptions()  # compression 2.4, log-prob -1.0, no-speech 0.6


@pytest.mark.parametrize(
    ("no_speech", "logprob", "options", "silent"),
    [
        (0.9, -1.5, DEFAULTS, True),  # likely silence and not confident
        (0.9, -0.5, DEFAULTS, False),  # confident text despite the no-speech probability
        (0.5, -1.5, DEFAULTS, False),  # speech, just unlikely text: a fallback case instead
        (0.9, -1.0, DEFAULTS, True),  # at the threshold: skipped, as faster-whisper does
        (0.9, -1.5, TranscribeOptions(no_speech_threshold=None), False),
        (0.9, -0.5, TranscribeOptions(log_prob_threshold=None), True),
    ],
)
def test_no_speech_rule(no_speech: float, logprob: float, options: TranscribeOptions, silent: bool) -> None:
    assert CTranslate2Transcriber._is_silence(no_speech, logprob, options) is silent


@pytest.mark.parametrize(
    ("ratio", "logprob", "options", "fallback"),
    [
        (1.5, -0.3, DEFAULTS, False),
        (2.5, -0.3, DEFAULTS, True),  # too repetitive
        (1.5, -1.2, DEFAULTS, True),  # too unlikely
        (2.4, -1.0, DEFAULTS, False),  # thresholds themselves pass
        (9.0, -9.0, TranscribeOptions(compression_ratio_threshold=None, log_prob_threshold=None), False),
    ],
)
def test_fallback_rule(ratio: float, logprob: float, options: TranscribeOptions, fallback: bool) -> None:
    assert CTranslate2Transcriber._needs_fallback(ratio, logprob, options) is fallback
