"""Response bodies of the HTTP API (OpenAI-compatible where OpenAI defines them).

They exist for the OpenAPI docs and the typed client; routes build them from
a :class:`twi_asr.types.Transcript` with :func:`verbose_from_transcript`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..languages import WHISPER_LANGUAGES
from ..types import Transcript

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class TranscriptionJSON(BaseModel):
    """``response_format=json``: OpenAI's shape."""

    text: str


class WordJSON(BaseModel):
    word: str
    start: float
    end: float
    probability: float | None = None


class SegmentJSON(BaseModel):
    """OpenAI's verbose segment; fields we do not compute carry neutral values."""

    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[WordJSON] | None = None


class VerboseTranscriptionJSON(BaseModel):
    """``response_format=verbose_json``: text plus language, duration, segments and words."""

    task: Literal["transcribe", "translate"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[SegmentJSON]
    words: list[WordJSON] | None = None
    model: str | None = None
    engine: str | None = None


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_audio, queue_full.")
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", ...}}``."""

    error: ErrorDetail


class ModelCard(BaseModel):
    """What a running server serves, exactly."""

    id: str
    object: Literal["model"] = "model"
    owned_by: str = "twi-asr"
    source: str
    format: str
    engine: str
    device: str
    weights_hash: str
    twi_asr_version: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "loading", "saturated", "error"]
    detail: str | None = None
    queue_depth: int = 0


def language_name(code: str | None) -> str:
    """OpenAI reports languages by name ("english"); unknown codes are kept as they are."""
    if not code:
        return "unknown"
    return WHISPER_LANGUAGES.get(code, code)


def verbose_from_transcript(t: Transcript, *, task: str, words: bool) -> VerboseTranscriptionJSON:
    """The verbose_json body of one transcript."""
    segments = [
        SegmentJSON(
            id=s.id,
            start=s.start,
            end=s.end,
            text=s.text,
            words=[
                WordJSON(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in s.words
            ]
            if (words and s.words is not None)
            else None,
        )
        for s in t.segments
    ]
    all_words = (
        [WordJSON(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in t.words]
        if words
        else None
    )
    return VerboseTranscriptionJSON(
        task="translate" if task == "translate" else "transcribe",
        language=language_name(t.language),
        duration=t.duration,
        text=t.text,
        segments=segments,
        words=all_words,
        model=t.model,
        engine=t.engine,
    )
