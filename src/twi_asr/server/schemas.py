"""Response bodies of the HTTP API (OpenAI-compatible where OpenAI defines them).

They exist for the OpenAPI docs and the typed client; routes build them from
a :class:`twi_asr.types.Transcript` with :func:`verbose_from_transcript`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..languages import WHISPER_LANGUAGES
from ..types import Segment, Transcript, Word

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class UsageJSON(BaseModel):
    """OpenAI's usage of a duration-billed model: the audio's length in whole seconds (rounded up)."""

    type: Literal["duration"] = "duration"
    seconds: int


class LogprobJSON(BaseModel):
    """One token of ``include[]=logprobs``: its text, natural-log probability and UTF-8 bytes."""

    token: str
    logprob: float
    bytes: list[int]


class TranscriptionJSON(BaseModel):
    """``response_format=json``: OpenAI's shape (text, usage; logprobs when asked for)."""

    text: str
    usage: UsageJSON | None = None
    logprobs: list[LogprobJSON] | None = None


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
    usage: UsageJSON | None = None
    language_probability: float | None = None
    warnings: list[str] | None = Field(
        default=None, description="What went wrong but did not stop decoding, e.g. a file that ends early."
    )
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


class Build(BaseModel):
    """Which code runs: package version, git commit, build time, source, lock hash, image id.

    Read from the image's ``TWI_ASR_BUILD_*`` variables, the sha256 of its lock file
    (``TWI_ASR_LOCK_FILE``) and ``TWI_ASR_IMAGE_ID``; each is null where unknown (a pip install).
    """

    version: str
    commit: str | None = None
    created: str | None = None
    source: str | None = None
    lock_sha256: str | None = None
    image_id: str | None = None


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
    build: Build


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """Alive, and what runs: the build always, the model once it is loaded."""

    status: Literal["ok"] = "ok"
    version: str
    build: Build
    model: str | None = None
    weights_hash: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "loading", "saturated", "error"]
    detail: str | None = None
    queue_depth: int = 0


def language_name(code: str | None) -> str:
    """OpenAI reports languages by name ("english"); unknown codes are kept as they are."""
    if not code:
        return "unknown"
    return WHISPER_LANGUAGES.get(code, code)


def usage_of(t: Transcript) -> UsageJSON:
    """OpenAI's ``usage`` for a transcript."""
    return UsageJSON(seconds=math.ceil(round(t.duration, 3)))


def logprobs_of(t: Transcript) -> list[LogprobJSON] | None:
    """``include[]=logprobs`` tokens, or None when the engine gave none."""
    if t.logprobs is None:
        return None
    return [LogprobJSON(token=p.token, logprob=p.logprob, bytes=list(p.bytes)) for p in t.logprobs]


def _words(words: tuple[Word, ...]) -> list[WordJSON]:
    return [WordJSON(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in words]


def segment_json(s: Segment, *, words: bool) -> SegmentJSON:
    """One verbose segment; decode-quality fields the engine did not give stay neutral (0)."""
    return SegmentJSON(
        id=s.id,
        start=s.start,
        end=s.end,
        text=s.text,
        temperature=s.temperature or 0.0,
        avg_logprob=s.avg_logprob if s.avg_logprob is not None else 0.0,
        compression_ratio=s.compression_ratio if s.compression_ratio is not None else 0.0,
        no_speech_prob=s.no_speech_prob if s.no_speech_prob is not None else 0.0,
        words=_words(s.words) if (words and s.words is not None) else None,
    )


def verbose_from_transcript(
    t: Transcript, *, task: str, words: bool, warnings: tuple[str, ...] = ()
) -> VerboseTranscriptionJSON:
    """The verbose_json body of one transcript."""
    return VerboseTranscriptionJSON(
        task="translate" if task == "translate" else "transcribe",
        language=language_name(t.language),
        duration=t.duration,
        text=t.text,
        segments=[segment_json(s, words=words) for s in t.segments],
        words=_words(t.words) if words else None,
        usage=usage_of(t),
        language_probability=t.language_probability,
        warnings=list(warnings) or None,
        model=t.model,
        engine=t.engine,
    )


EMPTY_FIELD = {"type": "string", "maxLength": 0}
# The words pydantic reads as a boolean (in any case), which is how a form sends a flag.
FLAG_WORDS = {
    "type": "string",
    "enum": ["0", "1", "f", "t", "n", "y", "no", "yes", "off", "on", "false", "true"],
}


def document_form_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI reads a form field as text: an empty one as absent (its default), a flag from words
    ("on", "no", "1"...). The OpenAPI document says so for every optional, non-file, non-list field."""
    components = schema.get("components", {}).get("schemas", {})
    for operation in (op for ops in schema.get("paths", {}).values() for op in ops.values()):
        form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
        ref = form.get("schema", {}).get("$ref", "")
        body = components.get(ref.rsplit("/", 1)[-1], {}) if ref else form.get("schema", {})
        for name, field in body.get("properties", {}).items():
            branches = field.get("anyOf", [field])
            if name in body.get("required", ()) or any(_skip_empty(b) for b in branches):
                continue
            words = [FLAG_WORDS] if any(b.get("type") == "boolean" for b in branches) else []
            meta = {k: field.pop(k) for k in ("title", "description", "default") if k in field}
            kept = field.pop("anyOf", None) or [dict(field)]
            field.clear()
            field.update(anyOf=[*kept, *words, EMPTY_FIELD], **meta)
    return schema


def _skip_empty(branch: dict[str, Any]) -> bool:
    """A list or file field (no single text), or one that already takes ``""``."""
    if branch.get("type") == "array" or branch.get("format") == "binary":
        return True
    limits = {"enum", "const", "minLength", "pattern", "format"}
    return branch.get("type") == "string" and not branch.keys() & limits
