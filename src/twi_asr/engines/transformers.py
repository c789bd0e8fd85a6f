"""Hugging Face transformers engine: any Whisper checkpoint as it is.

Batched ``generate`` on ``WhisperForConditionalGeneration``. Clips up to 30 s
go through the short-form path, shortest first, in batches whose encoder
window is cut to the longest clip plus 2 s (at least 10 s; see
:func:`.base.window_frames`) instead of Whisper's fixed 30 s: the encoder's
positional table is sliced to the window for the call (:func:`fit_window`).
Longer clips use transformers' sequential long-form decoding (untruncated
features plus an attention mask), which was measured faster than the chunked
ASR pipeline. fp16 on CUDA, fp32 on CPU, or ``int8`` (torch dynamic
quantisation of the Linear layers, CPU only) on request. Word timestamps come
from the checkpoint's alignment heads (``return_token_timestamps``).

Beam search: transformers reorders every layer's cross-attention cache at each
step, although the rows of one clip's beams hold the same encoder keys and
values. That copy was 30 % of the batched decode on 2 CPU cores; during our
calls it is skipped (:func:`skip_cross_attention_reorder`), token-for-token
the same output.

Decode quality: ``compression_ratio`` of each window's text always; ``avg_logprob`` and
``temperature`` when generate kept per-step scores and the temperature is known: the default
temperature ladder makes transformers keep them (its fallback needs them), so they cost
nothing more there; with a single temperature they are kept only for ``token_logprobs``.
``no_speech_prob`` stays None (transformers keeps it inside a logits processor).
``language_probability``: the softmax over language tokens of the detection step (1.0 when
the language is given or the model English-only).

This module loads the checkpoint, builds the ``generate`` call and batches the clips; the
speed-ups are in :mod:`.hf_speedups`, the reading of generate's segments (times, words,
log-probabilities) in :class:`.hf_segments.TransformersSegments` (inherited).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyMissingError, ModelNotFoundError, UsageError
from ..languages import language_code, resolve_language
from ..types import TranscribeOptions, Transcript
from .base import HOP_LENGTH, MAX_FRAMES, SAMPLE_RATE, AudioInput, make_transcript, window_frames
from .hf_segments import TransformersSegments
from .hf_speedups import (
    fit_window,
    quantize_linear_int8,
    skip_cross_attention_reorder,
    window_adaptable,
)

log = logging.getLogger(__name__)

SHORT_FORM_SAMPLES = 30 * SAMPLE_RATE
DTYPES = ("float32", "float16", "bfloat16", "int8")
"""``compute_type`` values of this engine: torch dtypes, and ``int8`` = dynamic quantisation."""


class TransformersTranscriber(TransformersSegments):
    """``WhisperForConditionalGeneration`` + processor behind the Transcriber protocol."""

    engine = "transformers"

    def __init__(
        self,
        path: Path,
        *,
        model_name: str,
        device: str = "auto",
        dtype: str = "default",
        batch_size: int = 0,
        fit_windows: bool = True,
        skip_cross_reorder: bool = True,
        long_form: str = "auto",
        cpu_threads: int = 0,
    ) -> None:
        """Load the checkpoint in ``path``.

        ``dtype``: ``default`` (float16 on CUDA, float32 on CPU), a torch dtype name, or ``int8``
        (CPU only: ``torch.ao.quantization.quantize_dynamic`` on every Linear layer, an explicit
        speed-for-accuracy trade). ``batch_size``: clips per ``generate`` call, 0 = auto (16 on
        CUDA, 4 on CPU). ``fit_windows`` / ``skip_cross_reorder``: the two speed-ups described
        in the module docstring, on by default; off only to measure or to rule them out.
        ``long_form``: clips over 30 s are ``vad`` split on silence and batched
        (:mod:`twi_asr.vad`), or decoded by transformers' ``sequential`` loop; ``auto`` = vad
        when faster-whisper and onnxruntime are installed. ``cpu_threads``: torch's intra-op
        threads (process-wide), 0 = torch's default. One ``transcribe`` at a time: the window
        cut patches the shared model during a call.
        """
        from ..vad import resolve_long_form

        self.long_form = resolve_long_form(long_form)
        if batch_size < 0:
            raise UsageError(f"batch size must be 0 (auto) or more, not {batch_size}")
        if dtype not in ("default", *DTYPES):
            raise UsageError(f"--compute-type {dtype}: the transformers engine takes {', '.join(DTYPES)}")
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise DependencyMissingError(
                "the transformers engine needs torch and transformers: pip install 'twi-asr[transformers]'"
            ) from exc
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "default":
            dtype = "float16" if device == "cuda" else "float32"
        if dtype == "int8" and device != "cpu":
            raise UsageError("--compute-type int8 with the transformers engine is for --device cpu only")
        self.model_name = model_name
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size if batch_size > 0 else (16 if device == "cuda" else 4)
        """Clips per ``generate`` call. 4 on CPU: on windows cut to the clips, 20 espeak clips with
        beam 5 on 2 cores took 6.5 s in batches of 4, 9.9 s in twos, 13 s one by one; batches of
        8 were no faster (6.2 s) and raised the peak RSS from 0.86 to 1.15 GB (beam search holds
        every beam's cross-attention keys and values)."""
        self.skip_cross_reorder = skip_cross_reorder
        self._torch = torch
        load_dtype = torch.float32 if dtype == "int8" else getattr(torch, dtype)
        try:
            self.processor = WhisperProcessor.from_pretrained(str(path))
            model = WhisperForConditionalGeneration.from_pretrained(str(path), dtype=load_dtype)
        except OSError as exc:
            raise ModelNotFoundError(f"cannot load a Whisper checkpoint from {path}: {exc}") from exc
        model = model.to(device).eval()
        if dtype == "int8":
            model = quantize_linear_int8(model)
        self.model = model
        self.fit_windows = fit_windows and window_adaptable(model)
        """Whether short-form batches get a window cut to their clips (else Whisper's 30 s)."""
        if fit_windows and not self.fit_windows:
            log.warning("this Whisper model's encoder cannot take a shorter window: using 30 s windows")
        gen = self.model.generation_config
        self.multilingual = bool(getattr(gen, "is_multilingual", False) or getattr(gen, "lang_to_id", None))
        self._default_language = self._checkpoint_language(gen)
        tok = self.processor.tokenizer
        self._timestamp_begin = int(tok.convert_tokens_to_ids("<|notimestamps|>")) + 1
        self._eos = int(tok.eos_token_id)
        self._language_probabilities: list[float] = []  # of the last _detect_languages call

    @property
    def _feature_dtype(self) -> Any:
        """What the mel features are cast to: the weights' dtype (float32 for int8)."""
        return getattr(self._torch, "float32" if self.dtype == "int8" else self.dtype)

    @staticmethod
    def _checkpoint_language(gen: Any) -> str | None:
        """The language the fine-tune forces by default (generation config), if any."""
        code = language_code(getattr(gen, "language", None))
        if code:
            return code
        id_to_lang = {v: k for k, v in (getattr(gen, "lang_to_id", None) or {}).items()}
        for pair in getattr(gen, "forced_decoder_ids", None) or []:
            if len(pair) == 2 and pair[1] in id_to_lang:
                return language_code(id_to_lang[pair[1]])
        return None

    # ------------------------------------------------------------------ API
    def transcribe(
        self, audios: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Transcribe clips in batches; clips over 30 s are cut on silence (``long_form="vad"``)
        and their pieces batched with the short clips, or decoded by the sequential loop."""
        options = options or TranscribeOptions()
        arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in audios]
        if self.long_form == "vad" and any(len(a) > SHORT_FORM_SAMPLES for a in arrays):
            from ..vad import transcribe_split

            language = resolve_language(options.language, checkpoint_default=self._default_language)
            return transcribe_split(
                arrays,
                lambda work: self._transcribe(work, options),
                empty=lambda duration: self._empty(duration, language, options),
                is_long=lambda a: len(a) > SHORT_FORM_SAMPLES,
            )
        return self._transcribe(arrays, options)

    def _empty(self, duration: float, language: str | None, options: TranscribeOptions) -> Transcript:
        return make_transcript(
            [],
            language=language if self.multilingual else "en",
            duration=duration,
            model=self.model_name,
            engine=self.engine,
            language_probability=1.0 if language or not self.multilingual else None,
            logprobs=() if options.token_logprobs else None,
        )

    def _transcribe(self, arrays: list[np.ndarray], options: TranscribeOptions) -> list[Transcript]:
        """Short clips in batches on cut windows, long ones by the sequential long-form loop."""
        language = resolve_language(options.language, checkpoint_default=self._default_language)
        results: list[Transcript | None] = [None] * len(arrays)
        todo: list[int] = []
        for i, a in enumerate(arrays):
            if len(a) == 0 or not np.any(a):  # silence: nothing to decode
                results[i] = self._empty(len(a) / SAMPLE_RATE, language, options)
            else:
                todo.append(i)
        # shortest first: similar lengths share a batch, so its window is not much longer than any clip
        short = sorted(
            (i for i in todo if len(arrays[i]) <= SHORT_FORM_SAMPLES), key=lambda i: len(arrays[i])
        )
        long = [i for i in todo if len(arrays[i]) > SHORT_FORM_SAMPLES]
        for group, long_form in ((short, False), (long, True)):
            for start in range(0, len(group), self.batch_size):
                # batches are formed by length; inside one, the clips keep their input order
                idx = sorted(group[start : start + self.batch_size])
                for i, t in zip(
                    idx, self._batch([arrays[i] for i in idx], options, language, long_form), strict=True
                ):
                    results[i] = t
        return [r for r in results if r is not None]

    # ------------------------------------------------------------ internals
    def _generate_kwargs(self, options: TranscribeOptions, language: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_beams": options.beam_size,
            "return_timestamps": True,
            "return_dict_in_generate": True,
            "condition_on_prev_tokens": options.condition_on_previous_text,
        }
        temps = options.temperatures
        kw["temperature"] = temps if len(temps) > 1 else temps[0]
        if len(temps) > 1:
            kw["compression_ratio_threshold"] = options.compression_ratio_threshold
            kw["logprob_threshold"] = options.log_prob_threshold
            if options.log_prob_threshold is not None:
                kw["no_speech_threshold"] = options.no_speech_threshold
        if options.word_timestamps:
            kw["return_token_timestamps"] = True
        if options.token_logprobs:
            kw["output_scores"] = True  # the ladder keeps them anyway (its fallback reads them)
        if options.initial_prompt:
            kw["prompt_ids"] = self.processor.get_prompt_ids(options.initial_prompt, return_tensors="pt").to(
                self.device
            )
        if self.multilingual:
            kw["task"] = options.task
            if language:
                kw["language"] = language
        return kw

    def _batch(
        self, batch: list[np.ndarray], options: TranscribeOptions, language: str | None, long_form: bool
    ) -> list[Transcript]:
        torch = self._torch
        frames = MAX_FRAMES
        if long_form:
            extra: dict[str, Any] = {"truncation": False, "padding": "longest"}
        else:
            # the window: the longest clip + 2 s of silence, at least 10 s, whole seconds; the
            # extractor pads the waveform to it, so the features are the first frames of the
            # 30 s ones (the log-mel floor comes from the speech, not from the padding)
            if self.fit_windows:
                frames = window_frames(max(len(a) for a in batch) // HOP_LENGTH + 1)
            extra = {"padding": "max_length", "max_length": frames * HOP_LENGTH, "truncation": True}
        feats = self.processor.feature_extractor(
            batch, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True, **extra
        )
        features = feats.input_features.to(self.device, dtype=self._feature_dtype)
        mask = feats.attention_mask.to(self.device)
        detected: list[str | None] = [language] * len(batch)
        sureness: list[float | None] = [1.0] * len(batch)
        kw = self._generate_kwargs(options, language)
        torch.manual_seed(0)  # temperature fallback samples: same audio, same text
        with (
            fit_window(self.model, frames if not long_form else MAX_FRAMES) as fitted,
            skip_cross_attention_reorder(self.skip_cross_reorder),
            torch.inference_mode(),
        ):
            assert fitted or frames == MAX_FRAMES  # __init__ turned fit_windows off otherwise
            if self.multilingual and not language:
                self._language_probabilities = []
                detected = [d or "en" for d in self._detect_languages(features)]  # what generate is told
                found = self._language_probabilities
                sureness = list(found) if len(found) == len(batch) else [None] * len(batch)
                kw["language"] = detected
            out = self.model.generate(features, attention_mask=mask, **kw)
        transcripts = []
        for b, audio in enumerate(batch):
            duration = len(audio) / SAMPLE_RATE
            segs, logprobs = self._segments(out["segments"][b], duration, options)
            lang = detected[b] if self.multilingual else "en"
            transcripts.append(
                make_transcript(
                    segs,
                    language=lang,
                    duration=duration,
                    model=self.model_name,
                    engine=self.engine,
                    language_probability=sureness[b] if self.multilingual else 1.0,
                    logprobs=logprobs,
                )
            )
        return transcripts

    def _detect_languages(self, features: Any) -> list[str | None]:
        """One decoder step on the first window: the language per clip (what
        ``model.detect_language`` computes); their probabilities (softmax over the language
        tokens) are left in ``self._language_probabilities`` (one call at a time: see __init__)."""
        torch = self._torch
        gen = self.model.generation_config
        lang_ids = list(gen.lang_to_id.values())
        sot = torch.full((features.shape[0], 1), gen.decoder_start_token_id, device=self.device)
        with torch.inference_mode():
            logits = self.model(
                input_features=features[:, :, :MAX_FRAMES], decoder_input_ids=sot, use_cache=False
            ).logits[:, -1]
            probs = logits[:, lang_ids].float().softmax(-1)
            best, where = probs.max(-1)
        tok = self.processor.tokenizer
        self._language_probabilities = [round(float(p), 4) for p in best.tolist()]
        return [language_code(tok.convert_ids_to_tokens(lang_ids[int(i)])) for i in where.tolist()]
