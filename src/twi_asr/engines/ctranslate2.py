"""CTranslate2 engine through faster-whisper: int8 on CPU, float16 on CUDA.

faster-whisper owns the decoding loop (temperature fallback, long-form
seeking, word alignment); we map our options onto it and its segments onto
our Transcript.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DependencyMissingError, UsageError
from ..languages import language_code, resolve_language
from ..types import Segment, TranscribeOptions, Transcript, Word
from .base import AudioInput, clamp_words, clean_text, make_transcript

log = logging.getLogger(__name__)


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


class CTranslate2Transcriber:
    """A faster-whisper ``WhisperModel`` behind the :class:`Transcriber` protocol."""

    engine = "ctranslate2"
    batch_size = 1  # faster-whisper decodes clip by clip

    def __init__(
        self,
        path: Path,
        *,
        model_name: str,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 0,
    ) -> None:
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise DependencyMissingError(
                "the ctranslate2 engine needs faster-whisper: pip install 'twi-asr[ct2]'"
            ) from exc
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        self.model_name = model_name
        self.device = device
        self.compute_type = compute_type
        self.path = path
        try:
            self._model = WhisperModel(
                str(path), device=device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except ValueError as exc:  # e.g. a compute type the device cannot do
            raise UsageError(f"cannot load {path} on {device} as {compute_type}: {exc}") from exc
        self.multilingual: bool = bool(self._model.model.is_multilingual)
        self._default_language = checkpoint_default_language(path)

    def transcribe(
        self, audios: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Transcribe each clip with faster-whisper (it batches inside one clip)."""
        options = options or TranscribeOptions()
        language = resolve_language(options.language, checkpoint_default=self._default_language)
        if not self.multilingual:
            language = "en"
        return [self._one(np.asarray(a, dtype=np.float32), options, language) for a in audios]

    def _one(self, audio: np.ndarray, options: TranscribeOptions, language: str | None) -> Transcript:
        duration = len(audio) / 16000.0
        if duration == 0.0 or not np.any(audio):
            return make_transcript(
                [], language=language, duration=duration, model=self.model_name, engine=self.engine
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
            segments.append(
                Segment(id=len(segments), start=start, end=end, text=clean_text(s.text), words=words)
            )
        return make_transcript(
            segments,
            language=language or info.language,
            duration=duration,
            model=self.model_name,
            engine=self.engine,
        )
