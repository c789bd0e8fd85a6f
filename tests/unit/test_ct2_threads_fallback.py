"""The CTranslate2 engine's pure rules: how it spends the cores, and its temperature ladder.

The ladder is driven here by scripted ``generate`` results (plain objects with the three
fields CTranslate2's ``WhisperGenerationResult`` has), so its choices can be checked one by
one; the integration tests run it on the real model.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from twi_asr.engines.base import ENGLISH_MIN_FRAMES, MIN_FRAMES, window_frames
from twi_asr.engines.ct2_fallback import Attempt, needs_fallback, temperature_ladder
from twi_asr.engines.ct2_threads import MAX_AUTO_LANES, ThreadPlan, plan_threads, split_evenly
from twi_asr.types import TranscribeOptions


@pytest.mark.parametrize(
    ("device", "cpu_threads", "workers", "cores", "expected"),
    [
        ("cpu", 0, 1, 2, ThreadPlan(inter_threads=2, intra_threads=1, lanes=2)),  # the CI machine
        ("cpu", 0, 1, 1, ThreadPlan(inter_threads=1, intra_threads=1, lanes=1)),
        ("cpu", 0, 1, 8, ThreadPlan(inter_threads=MAX_AUTO_LANES, intra_threads=4, lanes=MAX_AUTO_LANES)),
        ("cpu", 2, 1, 8, ThreadPlan(inter_threads=1, intra_threads=2, lanes=1)),  # asked: kept
        ("cpu", 0, 3, 8, ThreadPlan(inter_threads=3, intra_threads=0, lanes=1)),  # the server's workers
        ("cuda", 0, 1, 8, ThreadPlan(inter_threads=1, intra_threads=0, lanes=1)),
    ],
)
def test_thread_plan(device: str, cpu_threads: int, workers: int, cores: int, expected: ThreadPlan) -> None:
    assert plan_threads(device, cpu_threads, workers, cores) == expected


def test_window_floor_for_english_only_models() -> None:
    # An 8 s floor for English-only checkpoints bought 0.005 corpus WER and lost 3 of 7 words on the
    # browser's fake-microphone clip (c254abd): every checkpoint keeps the 10 s floor.
    assert ENGLISH_MIN_FRAMES == MIN_FRAMES == 1000
    assert window_frames(301) == MIN_FRAMES
    assert window_frames(301, ENGLISH_MIN_FRAMES) == ENGLISH_MIN_FRAMES
    assert window_frames(901, ENGLISH_MIN_FRAMES) == 1200  # longer clips: the clip + 2 s, whole seconds
    assert window_frames(3001) == 3000  # at most 30 s


def _result(tokens: int, score: float, no_speech: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(sequences_ids=[list(range(tokens))], scores=[score], no_speech_prob=no_speech)


def _first(avg_logprob: float, ratio: float = 1.0) -> Attempt:
    return Attempt(
        tokens=[1, 2], avg_logprob=avg_logprob, compression_ratio=ratio, no_speech_prob=0.0, temperature=0.0
    )


OPTIONS = TranscribeOptions()  # ladder 0, 0.2 ... 1.0; log-prob threshold -1; ratio threshold 2.4


def test_ladder_stops_at_the_first_temperature_that_passes() -> None:
    calls: list[tuple[list[int], float]] = []
    scripted = {0.2: [_result(9, -3.0), _result(9, -0.3)], 0.4: [_result(4, -0.2)]}

    def sample(members: list[int], temperature: float) -> list[SimpleNamespace]:
        calls.append((list(members), temperature))
        return scripted[temperature]

    kept = temperature_ladder([_first(-1.5), _first(-1.2)], sample, lambda tokens: 1.0, OPTIONS)
    assert calls == [([0, 1], 0.2), ([0], 0.4)]  # clip 1 passed at 0.2 and left the ladder
    assert [k.temperature for k in kept] == [0.4, 0.2]
    assert [len(k.tokens) for k in kept] == [4, 9]
    assert not any(needs_fallback(k, OPTIONS) for k in kept)


def test_ladder_keeps_the_most_likely_attempt_that_is_not_repetitive() -> None:
    def sample(members: list[int], temperature: float) -> list[SimpleNamespace]:
        return [_result(int(temperature * 10) + 1, -1.1 - temperature) for _ in members]

    ratios = {1: 1.0}  # a 1-token attempt (the first) has a fine ratio; every sampled one repeats

    kept = temperature_ladder([_first(-1.6)], sample, lambda tokens: ratios.get(len(tokens), 3.0), OPTIONS)
    # every sampled attempt is too repetitive, so the temperature-0 one (-1.6) is kept, reported at
    # the last temperature tried, as faster-whisper does
    [k] = kept
    assert (k.avg_logprob, k.temperature) == (-1.6, 1.0)

    # all too repetitive: the most likely of all, the 3 tokens sampled at 0.2 (-1.3 * 3 / 4)
    [k] = temperature_ladder([_first(-1.6, ratio=3.0)], sample, lambda tokens: 3.0, OPTIONS)
    assert (len(k.tokens), k.avg_logprob, k.temperature) == (3, pytest.approx(-0.975), 1.0)


def test_ladder_accepts_silence_and_needs_no_sampling_without_a_ladder() -> None:
    def sample(members: list[int], temperature: float) -> list[SimpleNamespace]:
        return [_result(3, -2.0, no_speech=0.9) for _ in members]  # unlikely text, likely no speech

    [k] = temperature_ladder([_first(-1.5)], sample, lambda tokens: 1.0, OPTIONS)
    assert k.temperature == 0.2 and k.no_speech_prob == 0.9  # the silence rule ends the ladder

    def never(members: list[int], temperature: float) -> list[SimpleNamespace]:
        raise AssertionError("no temperature after the first: nothing to sample")

    [k] = temperature_ladder(
        [_first(-1.5)], never, lambda tokens: 1.0, TranscribeOptions(temperatures=(0.0,))
    )
    assert k.avg_logprob == -1.5


@pytest.mark.parametrize(
    ("n", "batch", "lanes", "sizes"),
    [
        (12, 8, 2, [6, 6]),  # the 5-minute file's pieces: one round of two lanes
        (9, 8, 2, [5, 4]),
        (32, 8, 2, [8, 8, 8, 8]),
        (28, 8, 2, [8, 8, 8, 4]),  # more batches than lanes: batch_size as asked
        (7, 3, 2, [3, 3, 1]),
        (9, 8, 1, [8, 1]),  # one lane: nothing to balance
        (1, 8, 2, [1]),
        (0, 8, 2, []),
    ],
)
def test_split_evenly(n: int, batch: int, lanes: int, sizes: list[int]) -> None:
    chunks = split_evenly(list(range(n)), batch, lanes)
    assert [len(c) for c in chunks] == sizes
    assert [i for c in chunks for i in c] == list(range(n))  # order kept: lengths stay sorted
