"""CTranslate2 engine: int8 on CPU, float16 on CUDA.

Clips of up to 30 s are decoded in real batches, shortest first: one encoder
call and one beam-search ``generate`` call per batch, on a window that is only
as long as the longest clip of the batch plus 2 s of silence, and at least
10 s (8 s for an English-only model; not Whisper's fixed 30 s; see
:func:`.base.window_frames`). On CPU the batches of a call run side by side, one
model replica and one thread each (:mod:`.ct2_threads`). A clip whose batched result
looks like a failure (too repetitive, or too unlikely) is sampled again at the next
temperatures of the ladder on its batch's window (:mod:`.ct2_fallback`); with a single
temperature it is decoded again on its own by faster-whisper on a full 30 s window, as are
clips longer than 30 s (long-form seeking) and requests for word timestamps (word alignment).

Every segment carries its window's ``avg_logprob``, ``compression_ratio``, ``no_speech_prob``
and ``temperature`` (the ladder's on the batched path; faster-whisper's own values on the other), and
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

This module loads the model and routes each clip; the decoding itself is
:class:`.ct2_decode.CTranslate2Decoding` (inherited), and the token -> segment rules are
in :mod:`.ct2_segments`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np

from ..errors import DependencyMissingError, UsageError
from ..languages import language_code, resolve_language
from ..types import TranscribeOptions, Transcript
from .base import (  # noqa: F401
    ENGLISH_MIN_FRAMES,
    MAX_FRAMES,
    MIN_FRAMES,
    SAMPLE_RATE,
    AudioInput,
    make_transcript,
    window_frames,
)
from .ct2_decode import MAX_BATCHED_SECONDS, MAX_INITIAL_TIMESTAMP_INDEX, CTranslate2Decoding  # noqa: F401
from .ct2_segments import TIME_PRECISION, _avg_logprob, tokens_to_segments  # noqa: F401
from .ct2_threads import plan_threads, split_evenly

# re-exported, where tests and callers have always read them: MAX_FRAMES, MIN_FRAMES, window_frames,
# MAX_INITIAL_TIMESTAMP_INDEX, TIME_PRECISION, tokens_to_segments, _avg_logprob


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


class CTranslate2Transcriber(CTranslate2Decoding):
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
        plan = plan_threads(device, cpu_threads, workers)
        self.lanes = plan.lanes
        """Batches of one ``transcribe`` call decoded at the same time (see :mod:`.ct2_threads`)."""
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
                cpu_threads=plan.intra_threads,
                num_workers=plan.inter_threads,
            )
        except ValueError as exc:  # e.g. a compute type the device cannot do
            raise UsageError(f"cannot load {path} on {device} as {compute_type}: {exc}") from exc
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        self._default_language = checkpoint_default_language(path)
        self.min_frames = MIN_FRAMES if self.multilingual else ENGLISH_MIN_FRAMES

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
        chunks = split_evenly(batched, self.batch_size, self.lanes)

        def run(chunk: list[int]) -> list[Transcript]:
            return self._batch([clips[i] for i in chunk], options, language)

        if self.lanes > 1 and len(chunks) > 1:  # batches side by side, one replica and thread each
            with ThreadPoolExecutor(max_workers=self.lanes, thread_name_prefix="twi-asr-ct2") as pool:
                done = list(pool.map(run, chunks))
        else:
            done = [run(chunk) for chunk in chunks]
        for chunk, transcripts in zip(chunks, done, strict=True):
            for i, result in zip(chunk, transcripts, strict=True):
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
