"""Hugging Face transformers engine: any Whisper checkpoint as it is.

Batched ``generate`` on ``WhisperForConditionalGeneration``. Clips up to 30 s
go through the short-form path (features padded to 30 s); longer clips use
transformers' sequential long-form decoding (untruncated features plus an
attention mask), which was measured faster than the chunked ASR pipeline.
fp16 on CUDA, fp32 on CPU. Word timestamps come from the checkpoint's
alignment heads (``return_token_timestamps``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyMissingError, ModelNotFoundError
from ..languages import language_code, resolve_language
from ..types import Segment, TranscribeOptions, Transcript, Word
from .base import AudioInput, clamp_words, clean_text, make_transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SHORT_FORM_SAMPLES = 30 * SAMPLE_RATE


class TransformersTranscriber:
    """``WhisperForConditionalGeneration`` + processor behind the Transcriber protocol."""

    engine = "transformers"

    def __init__(
        self,
        path: Path,
        *,
        model_name: str,
        device: str = "auto",
        dtype: str = "default",
        batch_size: int = 8,
    ) -> None:
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise DependencyMissingError(
                "the transformers engine needs torch and transformers: pip install 'twi-asr[transformers]'"
            ) from exc
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "default":
            dtype = "float16" if device == "cuda" else "float32"
        self.model_name = model_name
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size if batch_size > 0 else (16 if device == "cuda" else 1)
        self._torch = torch
        try:
            self.processor = WhisperProcessor.from_pretrained(str(path))
            model = WhisperForConditionalGeneration.from_pretrained(str(path), dtype=getattr(torch, dtype))
        except OSError as exc:
            raise ModelNotFoundError(f"cannot load a Whisper checkpoint from {path}: {exc}") from exc
        self.model = model.to(device).eval()
        gen = self.model.generation_config
        self.multilingual = bool(getattr(gen, "is_multilingual", False) or getattr(gen, "lang_to_id", None))
        self._default_language = self._checkpoint_language(gen)
        tok = self.processor.tokenizer
        self._timestamp_begin = int(tok.convert_tokens_to_ids("<|notimestamps|>")) + 1
        self._eos = int(tok.eos_token_id)

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
        """Transcribe clips in batches; short and long clips are batched separately."""
        options = options or TranscribeOptions()
        language = resolve_language(options.language, checkpoint_default=self._default_language)
        arrays = [np.asarray(a, dtype=np.float32) for a in audios]
        results: list[Transcript | None] = [None] * len(arrays)
        todo: list[int] = []
        for i, a in enumerate(arrays):
            if len(a) == 0 or not np.any(a):  # silence: nothing to decode
                results[i] = make_transcript(
                    [],
                    language=language if self.multilingual else "en",
                    duration=len(a) / SAMPLE_RATE,
                    model=self.model_name,
                    engine=self.engine,
                )
            else:
                todo.append(i)
        short = [i for i in todo if len(arrays[i]) <= SHORT_FORM_SAMPLES]
        long = [i for i in todo if len(arrays[i]) > SHORT_FORM_SAMPLES]
        for group, long_form in ((short, False), (long, True)):
            for start in range(0, len(group), self.batch_size):
                idx = group[start : start + self.batch_size]
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
        extra: dict[str, Any] = {"truncation": False, "padding": "longest"} if long_form else {}
        feats = self.processor.feature_extractor(
            batch, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True, **extra
        )
        features = feats.input_features.to(self.device, dtype=getattr(torch, self.dtype))
        mask = feats.attention_mask.to(self.device)
        detected: list[str | None] = [language] * len(batch)
        kw = self._generate_kwargs(options, language)
        if self.multilingual and not language:
            detected = [d or "en" for d in self._detect_languages(features)]  # what generate is told
            kw["language"] = detected
        torch.manual_seed(0)  # temperature fallback samples: same audio, same text
        with torch.inference_mode():
            out = self.model.generate(features, attention_mask=mask, **kw)
        transcripts = []
        for b, audio in enumerate(batch):
            duration = len(audio) / SAMPLE_RATE
            segs = self._segments(out["segments"][b], duration, options.word_timestamps)
            lang = detected[b] if self.multilingual else "en"
            transcripts.append(
                make_transcript(
                    segs, language=lang, duration=duration, model=self.model_name, engine=self.engine
                )
            )
        return transcripts

    def _detect_languages(self, features: Any) -> list[str | None]:
        """One decoder step on the first window: the language token per clip."""
        torch = self._torch
        with torch.inference_mode():
            ids = self.model.detect_language(features[:, :, :3000])
        tok = self.processor.tokenizer
        return [language_code(tok.convert_ids_to_tokens(int(i))) for i in ids.view(-1)]

    def _segments(self, raw: list[dict[str, Any]], duration: float, words: bool) -> list[Segment]:
        tok = self.processor.tokenizer
        out: list[Segment] = []
        for seg in raw:
            tokens = [int(t) for t in seg["tokens"]]
            text = clean_text(tok.decode(tokens, skip_special_tokens=True))
            start = round(float(seg["start"]), 3)
            end = round(min(float(seg["end"]), duration), 3)
            if end < start:
                end = start
            seg_words = None
            if words and seg.get("token_timestamps") is not None:
                seg_words = clamp_words(self._words(tokens, seg["token_timestamps"], start, end), start, end)
            out.append(Segment(id=len(out), start=start, end=end, text=text, words=seg_words))
        return out

    def _words(self, tokens: list[int], times: Any, seg_start: float, seg_end: float) -> list[Word]:
        """Group sub-word tokens into words; a leading space starts a new word.

        ``times[k]`` is where token ``k`` ends on the alignment path (the
        leading timestamp token ends at the segment start), so token ``k``
        spans ``times[k-1]..times[k]``.
        """
        tok = self.processor.tokenizer
        ts = [float(t) for t in times]
        if not ts:
            return []
        # make window-relative times absolute (long-form windows start past 0)
        offset = seg_start - ts[0] if abs(ts[0] - seg_start) > 0.5 else 0.0
        words: list[Word] = []
        cur: list[int] = []
        cur_start = cur_end = seg_start
        for k, t in enumerate(tokens):
            if t >= self._eos:  # special and timestamp tokens carry no text
                continue
            t_start = (ts[k - 1] if 0 < k <= len(ts) else seg_start) + (offset if k > 0 else 0.0)
            t_end = ts[k] + offset if k < len(ts) else seg_end
            if tok.decode([t]).startswith(" ") and cur:
                words.append(Word(start=cur_start, end=cur_end, word=tok.decode(cur).strip()))
                cur = []
            if not cur:
                cur_start = t_start
            cur.append(t)
            cur_end = t_end
        if cur:
            words.append(Word(start=cur_start, end=cur_end, word=tok.decode(cur).strip()))
        return [w for w in words if w.word]
