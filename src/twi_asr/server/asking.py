"""What a transcription request asks for: the OpenAI form fields checked and turned into options.

Shared by every HTTP front of the engine (``twi-asr serve`` and the BentoML service in
:mod:`twi_asr.bento`), so the same form gets the same options and the same 400s on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import UsageError
from ..types import TranscribeOptions
from .errors import ApiError
from .schemas import ResponseFormat

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""temperature=0 (the form's default) means Whisper's fallback ladder, as OpenAI's API does."""


@dataclass(frozen=True)
class Asked:
    """What the client asked for, parsed and checked by the route."""

    task: str
    options: TranscribeOptions
    response_format: ResponseFormat
    words: bool
    stream: bool
    logprobs: bool


def asked_from_form(
    task: Literal["transcribe", "translate"],
    *,
    default_beam: int,
    language: str | None,
    prompt: str | None,
    response_format: ResponseFormat,
    temperature: float,
    granularities: list[str],
    beam_size: int | None,
    stream: bool,
    include: list[str],
) -> Asked:
    """Check the form fields and turn them into decoding options (400 invalid_option)."""
    from ..languages import resolve_language

    if stream and response_format in ("srt", "vtt"):
        raise ApiError(
            400,
            "invalid_option",
            f"response_format={response_format} cannot be streamed: use json or text with stream=true, "
            "or leave stream off for subtitles",
            param="stream",
        )
    unknown = sorted(set(include) - {"logprobs"})
    if unknown:
        raise ApiError(400, "invalid_option", f"include[]: unknown value(s) {unknown}; known: logprobs")
    logprobs = "logprobs" in include
    words = "word" in granularities
    try:
        options = TranscribeOptions(
            language=language or None,
            task=task,
            beam_size=beam_size or default_beam,
            temperatures=DEFAULT_TEMPERATURES if temperature == 0 else (temperature,),
            initial_prompt=prompt or None,
            word_timestamps=words,
            token_logprobs=logprobs,
        )
        resolve_language(options.language, checkpoint_default=None)
    except UsageError as exc:
        raise ApiError(400, "invalid_option", exc.message) from exc
    return Asked(task, options, response_format, words, stream, logprobs)


__all__ = ["DEFAULT_TEMPERATURES", "Asked", "asked_from_form"]
