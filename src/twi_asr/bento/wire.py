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
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import UsageError
from ..types import TranscribeOptions, Transcript

_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(TranscribeOptions))


class Clip(BaseModel):
    """16 kHz mono float32 samples and the decoding options asked for them.

    ``decode`` is :class:`TranscribeOptions` as a dict (``dataclasses.asdict``), so a new
    decoding option travels without a change here; an unknown name or a bad value is refused
    when the clip is made.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    audio: str = Field(description="16 kHz mono samples: little-endian float32, base64")
    decode: dict[str, Any] = Field(
        default_factory=dict, description="TranscribeOptions fields (unset: their defaults)"
    )

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

    @field_validator("decode")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Only TranscribeOptions' own fields, with values it accepts."""
        unknown = sorted(set(value) - _OPTION_NAMES)
        if unknown:
            raise ValueError(f"unknown decoding option {unknown[0]!r}")
        try:
            _options(value)
        except (UsageError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        return value

    @classmethod
    def of(cls, samples: np.ndarray, options: TranscribeOptions) -> Clip:
        """A clip of ``samples`` to be decoded with ``options``."""
        data = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        return cls(audio=base64.b64encode(data).decode("ascii"), decode=dataclasses.asdict(options))

    def samples(self) -> np.ndarray:
        """The samples as a read-only float32 array (checked whole when the clip was made)."""
        return np.frombuffer(base64.b64decode(self.audio), dtype="<f4")

    def options(self) -> TranscribeOptions:
        """The decoding options this clip asked for."""
        return _options(self.decode)

    def key(self) -> str:
        """Clips with equal keys can share one engine call."""
        return json.dumps(dataclasses.asdict(self.options()), sort_keys=True)


def _options(decode: dict[str, Any]) -> TranscribeOptions:
    """TranscribeOptions from JSON values (its tuples arrive as lists)."""
    return TranscribeOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in decode.items()})


def groups(clips: Sequence[Clip]) -> list[list[int]]:
    """Indices of ``clips`` grouped by their options, each group in input order."""
    by_key: dict[str, list[int]] = {}
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
