"""One exception tree for every failure a user can meet.

Each class carries the CLI exit code it maps to (0 ok, 1 some inputs failed,
2 bad usage, 3 environment) and, for the HTTP server, a stable machine code.
Messages say what went wrong *and* what to do about it; the CLI's single
error boundary prints them without a traceback.
"""

from __future__ import annotations


class TwiAsrError(Exception):
    """Base of every error twi-asr raises on purpose."""

    exit_code: int = 1
    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(TwiAsrError):
    """The user asked for something that cannot work (bad flag, bad value)."""

    exit_code = 2
    code = "bad_request"


class InputError(TwiAsrError):
    """One input could not be transcribed; others may still succeed."""

    exit_code = 1
    code = "bad_input"


class AudioError(InputError):
    """An input is not decodable audio (empty, truncated, not audio...)."""

    code = "invalid_audio"


class AudioTooLongError(AudioError):
    """An input is longer than the caller's limit; found from its header or while decoding,
    before the whole file is held in memory (a 10-hour upload is refused, not decoded)."""

    code = "audio_too_long"

    def __init__(self, message: str, *, seconds: float, limit: float) -> None:
        super().__init__(message)
        self.seconds = seconds
        """How long the audio is known to be (at least)."""
        self.limit = limit


class InputNotFoundError(InputError):
    """A named input file, folder or glob does not exist."""

    code = "not_found"


class EnvironmentProblem(TwiAsrError):
    """Something outside the inputs is missing: a model, a library, a tool."""

    exit_code = 3
    code = "environment"


class ModelNotFoundError(EnvironmentProblem):
    """The model cannot be found locally or reached on the hub."""

    code = "model_not_found"


class DependencyMissingError(EnvironmentProblem):
    """An optional dependency (an extra, ffmpeg...) is not installed."""

    code = "dependency_missing"


__all__ = [
    "AudioError",
    "AudioTooLongError",
    "DependencyMissingError",
    "EnvironmentProblem",
    "InputError",
    "InputNotFoundError",
    "ModelNotFoundError",
    "TwiAsrError",
    "UsageError",
]
