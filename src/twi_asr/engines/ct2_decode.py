"""The CTranslate2 engine's decoding: batched encode + generate, and faster-whisper for the rest.

:class:`CTranslate2Decoding` holds what :class:`~.ctranslate2.CTranslate2Transcriber` does
with a loaded faster-whisper ``WhisperModel`` once it has chosen the path of each clip: one
encoder call and one beam-search ``generate`` per batch of clips of at most 30 s, on a window
cut to the batch (:meth:`~CTranslate2Decoding._batch`), Whisper's no-speech and fallback
rules on its results (the temperature ladder on the batch's window, :mod:`.ct2_fallback`),
a faster-whisper decode for clips that cannot be batched, or fail with no ladder to climb
(:meth:`~CTranslate2Decoding._one`), and the teacher-forced ``align`` pass that scores the
kept tokens (:meth:`~CTranslate2Decoding._score`). Loading and routing stay in
:mod:`.ctranslate2`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import numpy as np

from ..types import Segment, TokenLogprob, TranscribeOptions, Transcript, Word
from .base import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    MAX_FRAMES,
    SAMPLE_RATE,
    clamp_words,
    clean_text,
    make_transcript,
    token_logprobs,
    window_frames,
)
from .ct2_fallback import BEST_OF, Attempt, attempt_of, is_silence, needs_fallback, temperature_ladder
from .ct2_segments import tokens_to_segments

log = logging.getLogger(__name__)

MAX_BATCHED_SECONDS = MAX_FRAMES / FRAMES_PER_SECOND
MAX_INITIAL_TIMESTAMP_INDEX = 50  # the first timestamp is at most 1 s in, as in Whisper


class CTranslate2Decoding:
    """Decoding on a loaded faster-whisper model; the engine class inherits it.

    It reads the attributes the engine sets when it loads: ``_model`` (the faster-whisper
    ``WhisperModel``), ``model_name``, ``engine`` and ``multilingual``.
    """

    engine: str
    model_name: str
    multilingual: bool
    min_frames: int
    """The shortest encoder window this model is given (see :func:`.base.window_frames`)."""
    _model: Any

    def _tokenizer(self, options: TranscribeOptions, language: str | None) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        task = options.task if self.multilingual else None
        return Tokenizer(self._model.hf_tokenizer, self.multilingual, task=task, language=language or "en")

    def _batch(
        self, clips: list[np.ndarray], options: TranscribeOptions, language: str | None
    ) -> list[Transcript]:
        """One encode + one beam-search generate for up to ``batch_size`` clips of at most 30 s."""
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio

        fw = self._model
        # the window: the longest clip + 2 s, at least min_frames; each clip padded with silence in the
        # waveform (as openai-whisper and transformers do), not with zero features
        frames = window_frames(max(len(a) for a in clips) // HOP_LENGTH + 1, self.min_frames)
        samples = frames * HOP_LENGTH
        batch = np.stack(
            [fw.feature_extractor(np.pad(a, (0, max(0, samples - len(a)))))[:, :frames] for a in clips]
        )
        encoded = fw.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=False)

        tokenizer = self._tokenizer(options, language)
        previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        prompt = fw.get_prompt(tokenizer, previous, without_timestamps=False)
        prompts = [list(prompt) for _ in clips]
        languages: list[str | None] = [language] * len(clips)
        sureness: list[float] = [1.0] * len(clips)  # given or English-only: 1.0, as faster-whisper
        if self.multilingual and language is None:  # the model decides, clip by clip
            at = prompt.index(tokenizer.language)
            for k, ranked in enumerate(fw.model.detect_language(encoded)):
                best, probability = ranked[0]  # "<|sw|>", 0.93
                prompts[k][at] = tokenizer.tokenizer.token_to_id(best)
                languages[k] = best[2:-2]
                sureness[k] = round(float(probability), 4)

        generated = fw.model.generate(
            encoded,
            prompts,
            beam_size=options.beam_size,
            patience=1,
            **self._generate_kwargs(tokenizer),
        )

        ratio_of = _ratio_counter(tokenizer, get_compression_ratio)
        attempts = [attempt_of(r, options.temperatures[0], ratio_of) for r in generated]
        failing = [
            k for k, a in enumerate(attempts) if not is_silence(a, options) and needs_fallback(a, options)
        ]
        redo: set[int] = set()
        if failing and len(options.temperatures) > 1:  # the ladder, on this batch's window
            log.debug("%d clip(s) of a batch failed the thresholds: sampling them again", len(failing))
            sampler = _Sampler(fw.model, batch, prompts, failing, options, self._generate_kwargs(tokenizer))
            for k, attempt in zip(
                failing,
                temperature_ladder([attempts[k] for k in failing], sampler, ratio_of, options),
                strict=True,
            ):
                attempts[k] = attempt
        else:  # one temperature only: faster-whisper decodes it again on a full 30 s window
            redo = set(failing)

        out: list[Transcript | None] = []
        kept: dict[int, tuple[list[int], list[int]]] = {}  # clip -> (tokens, text positions)
        for k, (audio, lang, attempt) in enumerate(zip(clips, languages, attempts, strict=True)):
            duration = len(audio) / SAMPLE_RATE
            if k in redo:
                out.append(self._one(audio, options, language))
                continue
            segments: list[Segment] = []
            if not is_silence(attempt, options):
                positions: list[int] = []
                segments = [
                    replace(
                        s,
                        avg_logprob=round(attempt.avg_logprob, 4),
                        compression_ratio=round(attempt.compression_ratio, 4),
                        no_speech_prob=round(attempt.no_speech_prob, 4),
                        temperature=attempt.temperature,
                    )
                    for s in tokens_to_segments(
                        attempt.tokens,
                        tokenizer.timestamp_begin,
                        tokenizer.eot,
                        tokenizer.decode,
                        duration,
                        positions,
                    )
                ]
                if options.token_logprobs:
                    kept[k] = (attempt.tokens, positions)
            out.append(
                make_transcript(
                    segments,
                    language=lang,
                    duration=duration,
                    model=self.model_name,
                    engine=self.engine,
                    language_probability=sureness[k],
                    logprobs=() if options.token_logprobs else None,
                )
            )
        if kept:
            scored = self._score(encoded, batch, prompts, kept, [len(a) // HOP_LENGTH for a in clips])
            for k, logprobs in scored.items():
                out[k] = replace(cast("Transcript", out[k]), logprobs=logprobs)
        return cast("list[Transcript]", out)

    def _score(
        self,
        encoded: Any,
        mels: np.ndarray,
        prompts: list[list[int]],
        kept: dict[int, tuple[list[int], list[int]]],
        num_frames: list[int],
    ) -> dict[int, tuple[TokenLogprob, ...]]:
        """Teacher-forced log-probabilities of the kept text tokens of some clips of a batch.

        One ``align`` call on the batch's encoder output when every clip has the same prompt;
        else one per distinct prompt (they differ by a detected language token), each on its
        clips' mel features ``mels`` (encoded again: a multilingual batch of mixed languages
        only). ``kept`` maps a clip's index in the batch to its generated tokens and the
        positions of the text tokens that made segments.
        """
        import ctranslate2

        fw = self._model
        groups: dict[tuple[int, ...], list[int]] = {}
        for k in kept:
            groups.setdefault(tuple(prompts[k]), []).append(k)
        if len({tuple(p) for p in prompts}) == 1:
            groups = {tuple(prompts[0]): list(range(len(prompts)))}  # the whole batch, as encoded
        filler = next(iter(kept.values()))  # scored and dropped for clips with nothing kept
        out: dict[int, tuple[TokenLogprob, ...]] = {}
        for prompt, members in groups.items():
            features = encoded
            if len(members) != len(prompts):
                features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mels[members]))
            results = fw.model.align(
                features,
                list(prompt),
                [kept.get(k, filler)[0] for k in members],
                [max(1, min(num_frames[k], MAX_FRAMES)) for k in members],
            )
            for k, result in zip(members, results, strict=True):
                if k not in kept:
                    continue
                tokens, positions = kept[k]
                probs = list(result.text_token_probs)
                out[k] = token_logprobs(
                    [fw.hf_tokenizer.id_to_token(tokens[i]) for i in positions],
                    [math.log(probs[i]) if probs[i] > 0 else -math.inf for i in positions],
                )
        return out

    def _generate_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """What every batched ``generate`` call of a batch shares, beam search or sampling."""
        from faster_whisper.transcribe import get_suppressed_tokens

        return {
            "length_penalty": 1,
            "max_length": self._model.max_length,
            "return_scores": True,
            "return_no_speech_prob": True,
            "suppress_blank": True,
            "suppress_tokens": list(get_suppressed_tokens(tokenizer, [-1]) or []),
            "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        }

    @staticmethod
    def _is_silence(no_speech_prob: float, avg_logprob: float, options: TranscribeOptions) -> bool:
        """Whisper's no-speech rule (see :func:`.ct2_fallback.is_silence`)."""
        return is_silence(Attempt([], avg_logprob, 0.0, no_speech_prob, 0.0), options)

    @staticmethod
    def _needs_fallback(compression_ratio: float, avg_logprob: float, options: TranscribeOptions) -> bool:
        """The thresholds at which Whisper retries at a higher temperature (see :mod:`.ct2_fallback`)."""
        return needs_fallback(Attempt([], avg_logprob, compression_ratio, 0.0, 0.0), options)

    def _one(self, audio: np.ndarray, options: TranscribeOptions, language: str | None) -> Transcript:
        duration = len(audio) / 16000.0
        if duration == 0.0 or not np.any(audio):
            return make_transcript(
                [],
                language=language,
                duration=duration,
                model=self.model_name,
                engine=self.engine,
                language_probability=1.0 if language else None,
                logprobs=() if options.token_logprobs else None,
            )
        seg_iter, info = self._model.transcribe(
            audio,
            language=language,
            task=options.task if self.multilingual else "transcribe",
            beam_size=options.beam_size,
            temperature=list(options.temperatures),
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.log_prob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=options.condition_on_previous_text,
            vad_filter=False,
        )
        segments: list[Segment] = []
        text_tokens: list[int] = []
        eot = self._model.hf_tokenizer.token_to_id("<|endoftext|>")
        for s in seg_iter:
            start, end = round(float(s.start), 3), round(float(min(s.end, duration)), 3)
            words = None
            if options.word_timestamps:
                words = clamp_words(
                    [
                        Word(
                            start=float(w.start),
                            end=float(w.end),
                            word=w.word.strip(),
                            probability=round(float(w.probability), 4),
                        )
                        for w in (s.words or [])
                    ],
                    start,
                    end,
                )
            text = clean_text(s.text)
            if text:
                text_tokens.extend(t for t in s.tokens if t < eot)
            segments.append(
                Segment(
                    id=len(segments),
                    start=start,
                    end=end,
                    text=text,
                    words=words,
                    avg_logprob=round(float(s.avg_logprob), 4),
                    compression_ratio=round(float(s.compression_ratio), 4),
                    no_speech_prob=round(float(s.no_speech_prob), 4),
                    temperature=float(s.temperature),
                )
            )
        logprobs = None
        if options.token_logprobs and len(audio) <= MAX_BATCHED_SECONDS * SAMPLE_RATE:
            logprobs = self._score_one(audio, text_tokens, options, language or info.language)
        return make_transcript(
            segments,
            language=language or info.language,
            duration=duration,
            model=self.model_name,
            engine=self.engine,
            language_probability=round(float(info.language_probability), 4),
            logprobs=logprobs,
        )

    def _score_one(
        self, audio: np.ndarray, text_tokens: list[int], options: TranscribeOptions, language: str | None
    ) -> tuple[TokenLogprob, ...]:
        """Token log-probabilities for a clip of at most 30 s that faster-whisper decoded: its text
        tokens scored in one pass on the clip's window, after the plain prompt (not the text of
        an earlier seek, if faster-whisper took more than one)."""
        if not text_tokens:
            return ()
        import ctranslate2

        fw = self._model
        frames = window_frames(len(audio) // HOP_LENGTH + 1, self.min_frames)
        padded = np.pad(audio, (0, max(0, frames * HOP_LENGTH - len(audio))))
        features = np.ascontiguousarray(fw.feature_extractor(padded)[:, :frames][None])
        encoded = fw.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        tokenizer = self._tokenizer(options, language)
        previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        prompt = fw.get_prompt(tokenizer, previous, without_timestamps=False)
        kept = {0: (text_tokens, list(range(len(text_tokens))))}
        return self._score(encoded, features, [prompt], kept, [len(audio) // HOP_LENGTH])[0]


def _ratio_counter(tokenizer: Any, ratio: Callable[[str], float]) -> Callable[[list[int]], float]:
    """Compression ratio of a token sequence's text (Whisper's repetition measure)."""
    return lambda tokens: float(ratio(tokenizer.decode(tokens).strip()))


class _Sampler:
    """Samples the failing clips of a batch again at a temperature, on the batch's window.

    Their features are encoded once (the first time the ladder needs them) and kept for the
    following temperatures; ``members`` index the failing clips, as the ladder asks.
    """

    def __init__(
        self,
        model: Any,
        mels: np.ndarray,
        prompts: list[list[int]],
        failing: list[int],
        options: TranscribeOptions,
        kwargs: dict[str, Any],
    ) -> None:
        self._model, self._mels, self._prompts, self._failing = model, mels, prompts, failing
        self._kwargs = kwargs
        self._encoded: tuple[tuple[int, ...], Any] | None = None

    def __call__(self, members: list[int], temperature: float) -> list[Any]:
        import ctranslate2

        clips = tuple(self._failing[m] for m in members)
        if self._encoded is None or self._encoded[0] != clips:
            features = ctranslate2.StorageView.from_array(np.ascontiguousarray(self._mels[list(clips)]))
            self._encoded = (clips, self._model.encode(features, to_cpu=False))
        return list(
            self._model.generate(
                self._encoded[1],
                [list(self._prompts[k]) for k in clips],
                beam_size=1,
                num_hypotheses=BEST_OF,
                sampling_topk=0,
                sampling_temperature=temperature,
                **self._kwargs,
            )
        )
