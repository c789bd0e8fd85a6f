"""CTranslate2 engine: int8 on CPU, float16 on CUDA.

Clips of up to 30 s are decoded in real batches, shortest first: one encoder
call and one beam-search ``generate`` call per batch, on a window that is only
as long as the longest clip of the batch plus 2 s of silence, and at least
10 s (not Whisper's fixed 30 s; see :func:`.base.window_frames`). A clip whose
batched result looks like a failure (too repetitive, or too unlikely) is decoded
again on its own by faster-whisper, which owns the temperature-fallback ladder;
so do clips longer than 30 s (long-form seeking) and requests for word timestamps
(word alignment).

Every segment carries its window's ``avg_logprob``, ``compression_ratio``, ``no_speech_prob``
and ``temperature`` (0.0 on the batched path; faster-whisper's own values on the other), and
the transcript its ``language_probability`` (detect_language's top score; 1.0 when the
language was given or the model is English-only, as faster-whisper reports it).

Token log-probabilities (``TranscribeOptions.token_logprobs``): CTranslate2 4.8's
``generate(return_logits_vocab=True)`` returns the per-step vocabulary only for greedy search
(with beam search it comes back empty), so the decoded sequence is scored afterwards by one
teacher-forced decoder pass, ``Whisper.align`` (the call faster-whisper makes for word
probabilities), on the encoder output already computed: the same context as the decode, but
over text tokens only (timestamps masked), so values are within a few hundredths of the
decode's own. Clips decoded by faster-whisper get the same pass on their window when they
are at most 30 s; longer clips on the ``sequential`` long-form path get ``logprobs=None``
(``long_form="vad"`` cuts them into pieces that do get them).

``workers``: CTranslate2 model replicas (``inter_threads``, weights shared): up to that many
``transcribe`` calls may run at once from different Python threads.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import DependencyMissingError, UsageError
from ..languages import language_code, resolve_language
from ..types import Segment, TokenLogprob, TranscribeOptions, Transcript, Word
from .base import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    MAX_FRAMES,
    MIN_FRAMES,  # noqa: F401  (re-exported: tests and callers read it here)
    SAMPLE_RATE,
    AudioInput,
    clamp_words,
    clean_text,
    make_transcript,
    token_logprobs,
    window_frames,
)

log = logging.getLogger(__name__)

TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_BATCHED_SECONDS = MAX_FRAMES / FRAMES_PER_SECOND
MAX_INITIAL_TIMESTAMP_INDEX = 50  # the first timestamp is at most 1 s in, as in Whisper


def checkpoint_default_language(folder: Path) -> str | None:
    """The language a converted fine-tune was trained with, if its folder records it.

    ``twi-asr models convert`` copies the transformers generation config next
    to model.bin; its ``language`` (or forced decoder ids) tells us the token
    the fine-tune expects.
    """
    gen = folder / "generation_config.json"
    if not gen.is_file():
        return None
    try:
        cfg = json.loads(gen.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    code = language_code(cfg.get("language"))
    if code:
        return code
    lang_to_id = cfg.get("lang_to_id")
    id_to_lang = {v: k for k, v in lang_to_id.items()} if isinstance(lang_to_id, dict) else {}
    for pos_token in cfg.get("forced_decoder_ids") or []:
        if isinstance(pos_token, list) and len(pos_token) == 2 and pos_token[1] in id_to_lang:
            return language_code(id_to_lang[pos_token[1]])
    return None


def tokens_to_segments(
    tokens: Sequence[int],
    timestamp_begin: int,
    eot: int,
    decode: Callable[[list[int]], str],
    duration: float,
    positions: list[int] | None = None,
) -> list[Segment]:
    """Split one generated sequence (text and timestamp tokens) into timed segments.

    Ids ``>= timestamp_begin`` are timestamps at ``(id - timestamp_begin) * 0.02`` s. A
    timestamp after text closes a segment; the next one (often the same time) opens the
    following segment. Text with no opening timestamp starts where the previous segment
    ended (0 at first); a trailing text run without a closing timestamp ends at ``duration``.
    Generation stops at ``eot``; other special tokens (ids between ``eot`` and the
    timestamps) are not text. Segments with no text after ``decode`` are dropped, and so are
    segments that start at or after ``duration``: they lie in the silence padded after the
    clip (where Whisper sometimes repeats the last sentence). Times are kept inside
    ``[0, duration]``. ``positions``, when given, receives the index in ``tokens`` of every
    text token of the kept segments, in order.
    """
    segments: list[Segment] = []
    text: list[int] = []
    at: list[int] = []
    start = 0.0

    def close(end: float) -> None:
        words = clean_text(decode(text))
        if words and start < duration:
            s = min(max(start, 0.0), duration)
            e = min(max(end, s), duration)
            segments.append(Segment(id=len(segments), start=round(s, 3), end=round(e, 3), text=words))
            if positions is not None:
                positions.extend(at)
        text.clear()
        at.clear()

    for k, token in enumerate(tokens):
        if token == eot:
            break
        if token >= timestamp_begin:
            time = (token - timestamp_begin) * TIME_PRECISION
            if text:
                close(time)
            start = time  # opens the next segment (a second timestamp moves it)
        elif token < eot:
            text.append(token)
            at.append(k)
    if text:
        close(duration)
    return segments


def _avg_logprob(score: float, seq_len: int) -> float:
    """faster-whisper's average log-probability of a beam result (length penalty 1)."""
    return score * seq_len / (seq_len + 1)


class CTranslate2Transcriber:
    """A faster-whisper ``WhisperModel`` behind the :class:`Transcriber` protocol."""

    engine = "ctranslate2"

    def __init__(
        self,
        path: Path,
        *,
        model_name: str,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 0,
        batch_size: int = 0,
        long_form: str = "auto",
        workers: int = 1,
    ) -> None:
        """Load the CTranslate2 folder ``path``; ``long_form`` as in :func:`twi_asr.vad.resolve_long_form`.

        ``workers``: model replicas sharing the weights (faster-whisper's ``num_workers``): up to
        that many ``transcribe`` calls run at once from different threads. ``cpu_threads``:
        threads per replica (0 = CTranslate2's default); on CPU keep workers x cpu_threads
        within the cores (tiny.en, 2 cores: 1 x 2 or 2 x 1).
        """
        from ..vad import resolve_long_form

        self.long_form = resolve_long_form(long_form)
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise DependencyMissingError(
                "the ctranslate2 engine needs faster-whisper: pip install 'twi-asr[ct2]'"
            ) from exc
        if batch_size < 0:
            raise UsageError(f"batch size must be 0 (auto) or more, not {batch_size}")
        if workers < 1:
            raise UsageError(f"workers must be at least 1, not {workers}")
        if cpu_threads < 0:
            raise UsageError(f"cpu threads must be 0 (auto) or more, not {cpu_threads}")
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        self.model_name = model_name
        self.device = device
        self.compute_type = compute_type
        self.path = path
        self.workers = workers
        """How many ``transcribe`` calls may run at once (each on its own model replica)."""
        self.batch_size = batch_size or (16 if device == "cuda" else 8)
        """Clips per batched encode + generate call: 0 picks 16 on CUDA and 8 on CPU."""
        try:
            self._model = WhisperModel(
                str(path),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=workers,
            )
        except ValueError as exc:  # e.g. a compute type the device cannot do
            raise UsageError(f"cannot load {path} on {device} as {compute_type}: {exc}") from exc
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        self._default_language = checkpoint_default_language(path)

    def transcribe(
        self, audios: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Transcribe every clip; clips of up to 30 s are decoded together, shortest first, and so
        are the pieces of longer clips cut on silence (``long_form="vad"``)."""
        options = options or TranscribeOptions()
        clips = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        limit = MAX_BATCHED_SECONDS * SAMPLE_RATE
        if self.long_form == "vad" and any(len(a) > limit for a in clips):
            from ..vad import transcribe_split

            language = resolve_language(options.language, checkpoint_default=self._default_language)
            return transcribe_split(
                clips,
                lambda work: self._transcribe(work, options),
                empty=lambda duration: make_transcript(
                    [],
                    language=language if self.multilingual else "en",
                    duration=duration,
                    model=self.model_name,
                    engine=self.engine,
                ),  # fmt: skip
                is_long=lambda a: len(a) > limit,
            )
        return self._transcribe(clips, options)

    def _transcribe(self, clips: list[np.ndarray], options: TranscribeOptions) -> list[Transcript]:
        """Clips of up to 30 s in batches, shortest first; longer ones through faster-whisper."""
        language = resolve_language(options.language, checkpoint_default=self._default_language)
        if not self.multilingual:
            language = "en"
        results: list[Transcript | None] = [None] * len(clips)
        batched: list[int] = []
        for i, audio in enumerate(clips):
            if self._batchable(audio, options):
                batched.append(i)
            else:  # silence, long-form, word timestamps, sampling from the first try
                results[i] = self._one(audio, options, language)
        batched.sort(key=lambda i: len(clips[i]))  # similar lengths share a window: little padding
        for first in range(0, len(batched), self.batch_size):
            chunk = batched[first : first + self.batch_size]
            for i, result in zip(
                chunk, self._batch([clips[i] for i in chunk], options, language), strict=True
            ):
                results[i] = result
        assert all(r is not None for r in results)
        return cast("list[Transcript]", results)

    @staticmethod
    def _batchable(audio: np.ndarray, options: TranscribeOptions) -> bool:
        return (
            0 < len(audio) <= MAX_BATCHED_SECONDS * SAMPLE_RATE
            and bool(np.any(audio))
            and not options.word_timestamps
            and options.temperatures[0] == 0.0
        )

    def _tokenizer(self, options: TranscribeOptions, language: str | None) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        task = options.task if self.multilingual else None
        return Tokenizer(self._model.hf_tokenizer, self.multilingual, task=task, language=language or "en")

    def _batch(
        self, clips: list[np.ndarray], options: TranscribeOptions, language: str | None
    ) -> list[Transcript]:
        """One encode + one beam-search generate for up to ``batch_size`` clips of at most 30 s."""
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        fw = self._model
        # the window: the longest clip + 2 s, at least 10 s; each clip padded with silence in the
        # waveform (as openai-whisper and transformers do), not with zero features
        frames = window_frames(max(len(a) for a in clips) // HOP_LENGTH + 1)
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
            length_penalty=1,
            max_length=fw.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1]) or []),
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        )

        out: list[Transcript | None] = []
        kept: dict[int, tuple[list[int], list[int]]] = {}  # clip -> (tokens, text positions)
        for k, (audio, lang, result) in enumerate(zip(clips, languages, generated, strict=True)):
            duration = len(audio) / SAMPLE_RATE
            tokens = list(result.sequences_ids[0])
            avg_logprob = _avg_logprob(result.scores[0], len(tokens))
            ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
            if self._is_silence(result.no_speech_prob, avg_logprob, options):
                segments: list[Segment] = []
            elif self._needs_fallback(ratio, avg_logprob, options):
                log.debug(
                    "batched decode of a %.1f s clip failed the thresholds: decoding it alone", duration
                )
                out.append(self._one(audio, options, language))
                continue
            else:
                positions: list[int] = []
                segments = [
                    replace(
                        s,
                        avg_logprob=round(avg_logprob, 4),
                        compression_ratio=round(ratio, 4),
                        no_speech_prob=round(float(result.no_speech_prob), 4),
                        temperature=0.0,
                    )
                    for s in tokens_to_segments(
                        tokens,
                        tokenizer.timestamp_begin,
                        tokenizer.eot,
                        tokenizer.decode,
                        duration,
                        positions,
                    )
                ]
                if options.token_logprobs:
                    kept[k] = (tokens, positions)
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

    @staticmethod
    def _is_silence(no_speech_prob: float, avg_logprob: float, options: TranscribeOptions) -> bool:
        """Whisper's no-speech rule: likely no speech, and the text is not confident enough to keep."""
        if options.no_speech_threshold is None or no_speech_prob <= options.no_speech_threshold:
            return False
        return options.log_prob_threshold is None or avg_logprob <= options.log_prob_threshold

    @staticmethod
    def _needs_fallback(compression_ratio: float, avg_logprob: float, options: TranscribeOptions) -> bool:
        """The thresholds at which Whisper retries at a higher temperature."""
        crt, lpt = options.compression_ratio_threshold, options.log_prob_threshold
        return (crt is not None and compression_ratio > crt) or (lpt is not None and avg_logprob < lpt)

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
        frames = window_frames(len(audio) // HOP_LENGTH + 1)
        padded = np.pad(audio, (0, max(0, frames * HOP_LENGTH - len(audio))))
        features = np.ascontiguousarray(fw.feature_extractor(padded)[:, :frames][None])
        encoded = fw.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        tokenizer = self._tokenizer(options, language)
        previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        prompt = fw.get_prompt(tokenizer, previous, without_timestamps=False)
        kept = {0: (text_tokens, list(range(len(text_tokens))))}
        return self._score(encoded, features, [prompt], kept, [len(audio) // HOP_LENGTH])[0]
