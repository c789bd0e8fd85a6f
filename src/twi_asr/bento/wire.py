"""What travels to the BentoML service's batchable API: one clip of audio and how to decode it.

BentoML's adaptive batching concatenates the ``clips`` lists of concurrent calls into one
list, so every clip carries its own options; :func:`groups` then hands the engine one
``transcribe`` call per distinct set of options, in one batch each. The samples travel as
little-endian float32 bytes in base64 text, the same array the 8001 server gives its engine, so
both paths decode the same numbers. (A ``str`` field decoded here rather than pydantic's
``bytes`` with a base64 setting: a ``bytes`` field validated from already parsed JSON takes the
text's UTF-8 bytes, not the decoded ones.) Plain pydantic: nothing here imports BentoML.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..types import TranscribeOptions, Transcript


class Clip(BaseModel):
    """16 kHz mono float32 samples and the decoding options asked for them."""

    model_config = ConfigDict(frozen=True)

    audio: str = Field(description="16 kHz mono samples: little-endian float32, base64")
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    beam_size: int = Field(5, ge=1, le=20)
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    initial_prompt: str | None = None
    word_timestamps: bool = False
    token_logprobs: bool = False

    @field_validator("audio")
    @classmethod
    def _whole_samples(cls, value: str) -> str:
        """Refused at validation (BentoML's 400 for that call alone), not inside a shared batch."""
        try:
            size = len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"audio is not base64: {exc}") from None
        if size % 4:
            raise ValueError(f"audio is {size} bytes, not a whole number of float32 samples")
        return value

    @classmethod
    def of(cls, samples: np.ndarray, options: TranscribeOptions) -> Clip:
        """A clip of ``samples`` to be decoded with ``options``."""
        data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        return cls(
            audio=base64.b64encode(data).decode("ascii"),
            language=options.language,
            task=options.task,
            beam_size=options.beam_size,
            temperatures=tuple(options.temperatures),
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            token_logprobs=options.token_logprobs,
        )

    def samples(self) -> np.ndarray:
        """The samples as a read-only float32 array (checked whole when the clip was made)."""
        return np.frombuffer(base64.b64decode(self.audio), dtype="<f4")

    def options(self) -> TranscribeOptions:
        """The decoding options this clip asked for."""
        return TranscribeOptions(
            language=self.language,
            task=self.task,
            beam_size=self.beam_size,
            temperatures=self.temperatures,
            initial_prompt=self.initial_prompt,
            word_timestamps=self.word_timestamps,
            token_logprobs=self.token_logprobs,
        )

    def key(self) -> tuple[Any, ...]:
        """Clips with equal keys can share one engine call."""
        return tuple(self.model_dump(exclude={"audio"}).values())


def groups(clips: Sequence[Clip]) -> list[list[int]]:
    """Indices of ``clips`` grouped by their options, each group in input order."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        by_key.setdefault(clip.key(), []).append(i)
    return list(by_key.values())


def transcribe_clips(engine: Any, clips: Sequence[Clip]) -> list[dict[str, Any]]:
    """Run ``engine`` (a :class:`twi_asr.engines.base.Transcriber`) over clips with mixed options.

    One ``transcribe`` call per group of equal options; the answers come back in input order as
    :meth:`Transcript.to_dict` dicts (what the batchable API returns over JSON).
    """
    out: list[Transcript | None] = [None] * len(clips)
    for indices in groups(clips):
        first = clips[indices[0]]
        results = engine.transcribe([clips[i].samples() for i in indices], first.options())
        for i, result in zip(indices, results, strict=True):
            out[i] = result
    return [t.to_dict() for t in out if t is not None]


__all__ = ["Clip", "groups", "transcribe_clips"]
