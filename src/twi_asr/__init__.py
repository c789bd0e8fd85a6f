"""twi-asr: Whisper speech recognition for production, Twi (Akan) first.

The public API is small and typed::

    from twi_asr import load_transcriber, TranscribeOptions, decode_audio

    asr = load_transcriber("tiny.en")                 # alias, folder, hub id or s3://
    audio = decode_audio("clip.wav")                   # any format -> 16 kHz mono float32
    [result] = asr.transcribe([audio.samples], TranscribeOptions(language="tw"))
    print(result.text)

Importing this package is cheap: torch, transformers and ctranslate2 load
only when an engine is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AudioError,
    AudioTooLongError,
    DependencyMissingError,
    EnvironmentProblem,
    InputError,
    InputNotFoundError,
    ModelNotFoundError,
    TwiAsrError,
    UsageError,
)
from .types import Segment, Timings, TranscribeOptions, Transcript, Word

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .audio import Audio, decode_audio
    from .engines import load_transcriber
    from .engines.base import Transcriber

__all__ = [
    "Audio",
    "AudioError",
    "AudioTooLongError",
    "DependencyMissingError",
    "EnvironmentProblem",
    "InputError",
    "InputNotFoundError",
    "ModelNotFoundError",
    "Segment",
    "Timings",
    "TranscribeOptions",
    "Transcriber",
    "Transcript",
    "TwiAsrError",
    "UsageError",
    "Word",
    "__version__",
    "decode_audio",
    "load_transcriber",
]

_LAZY = {
    "Audio": ("audio", "Audio"),
    "decode_audio": ("audio", "decode_audio"),
    "load_transcriber": ("engines", "load_transcriber"),
    "Transcriber": ("engines.base", "Transcriber"),
}


def __getattr__(name: str) -> Any:
    """Import numpy-backed parts on first use, so ``import twi_asr`` stays instant."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twi_asr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
