"""Whisper's temperature fallback for the CTranslate2 engine's batched path, on the batch's window.

A clip whose beam-search result fails Whisper's thresholds (too repetitive, or too unlikely)
is decoded again at the next temperatures of the ladder, sampling ``best_of`` hypotheses, as
faster-whisper's ``generate_with_fallback`` does; the first result that passes is kept, else
the most likely one (among those that are not too repetitive, if any). Here the retry runs
on the clip's own fitted window, for every failing clip of a batch at once, instead of
faster-whisper decoding the clip again from scratch on a full 30 s window (one encoder pass
on 30 s, the temperature-0 beam search again, then the ladder on 1,500 encoder frames). On the
bench's 60 clips that redo of one clip was a fifth of the whole run (4.2 of ~20 s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..types import TranscribeOptions
from .ct2_segments import _avg_logprob

BEST_OF = 5
"""Hypotheses sampled per clip at a temperature above 0 (faster-whisper's ``best_of`` default)."""


@dataclass(frozen=True)
class Attempt:
    """One decode of one clip at one temperature, with the numbers Whisper's rules read."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float


def attempt_of(result: Any, temperature: float, ratio_of: Callable[[list[int]], float]) -> Attempt:
    """An :class:`Attempt` from one CTranslate2 ``WhisperGenerationResult`` (its best hypothesis)."""
    tokens = list(result.sequences_ids[0])
    return Attempt(
        tokens=tokens,
        avg_logprob=_avg_logprob(result.scores[0], len(tokens)),
        compression_ratio=ratio_of(tokens),
        no_speech_prob=float(result.no_speech_prob),
        temperature=temperature,
    )


def is_silence(attempt: Attempt, options: TranscribeOptions) -> bool:
    """Whisper's no-speech rule: likely no speech, and the text is not confident enough to keep."""
    if options.no_speech_threshold is None or attempt.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.log_prob_threshold is None or attempt.avg_logprob <= options.log_prob_threshold


def needs_fallback(attempt: Attempt, options: TranscribeOptions) -> bool:
    """The thresholds at which Whisper retries at a higher temperature."""
    crt, lpt = options.compression_ratio_threshold, options.log_prob_threshold
    return (crt is not None and attempt.compression_ratio > crt) or (
        lpt is not None and attempt.avg_logprob < lpt
    )


def _too_repetitive(attempt: Attempt, options: TranscribeOptions) -> bool:
    crt = options.compression_ratio_threshold
    return crt is not None and attempt.compression_ratio > crt


def _settled(attempt: Attempt, options: TranscribeOptions) -> bool:
    """Passes the thresholds, or counts as silence (faster-whisper stops its ladder on both)."""
    return not needs_fallback(attempt, options) or (
        options.no_speech_threshold is not None
        and attempt.no_speech_prob > options.no_speech_threshold
        and options.log_prob_threshold is not None
        and attempt.avg_logprob < options.log_prob_threshold
    )


def temperature_ladder(
    first: Sequence[Attempt],
    sample: Callable[[list[int], float], list[Any]],
    ratio_of: Callable[[list[int]], float],
    options: TranscribeOptions,
) -> list[Attempt]:
    """The attempt to keep for each clip whose temperature-0 attempt ``first[k]`` failed.

    ``sample(members, temperature)`` decodes the clips at those indices of ``first`` again by
    sampling at ``temperature`` and returns one CTranslate2 result per member, in order. The
    ladder is ``options.temperatures`` after its first value; clips leave it as soon as an
    attempt passes (or is silence). A clip that never passes keeps its most likely attempt,
    preferring those that are not too repetitive; its temperature is the last one tried, as
    faster-whisper reports it.
    """
    tried: list[list[Attempt]] = [[a] for a in first]
    kept: list[Attempt | None] = [None] * len(first)
    pending = list(range(len(first)))
    last = options.temperatures[0]
    for temperature in options.temperatures[1:]:
        if not pending:
            break
        last = temperature
        results = sample(pending, temperature)
        still: list[int] = []
        for k, result in zip(pending, results, strict=True):
            attempt = attempt_of(result, temperature, ratio_of)
            tried[k].append(attempt)
            if _settled(attempt, options):
                kept[k] = attempt
            else:
                still.append(k)
        pending = still
    for k in pending:
        fine = [a for a in tried[k] if not _too_repetitive(a, options)] or tried[k]
        best = max(fine, key=lambda a: a.avg_logprob)
        kept[k] = Attempt(best.tokens, best.avg_logprob, best.compression_ratio, best.no_speech_prob, last)
    return [a for a in kept if a is not None]
