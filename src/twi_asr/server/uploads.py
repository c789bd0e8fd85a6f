"""From an upload to the pieces the batcher schedules, and from their transcripts back to one.

An upload is decoded straight from the file Starlette spooled it to, with the duration
limit applied from the header and while decoding (:func:`twi_asr.audio.decode_audio`), in
the server's bounded decode pool. A long upload is then cut on silence (the engines' own
``vad`` long-form path, done here so that its pieces are separate work items the batcher
can interleave with other requests); its pieces are views of the decoded samples, not
copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import IO

import numpy as np

from ..audio import Audio
from ..engines.base import clean_text, make_transcript
from ..errors import AudioError, AudioTooLongError, EnvironmentProblem
from ..types import Segment, Transcript
from ..vad import Piece, stitch
from .errors import ApiError
from .metrics import Metrics

SHORT_S = 30.0
"""Uploads up to this long are one piece (Whisper's window); longer ones are bulk work."""


class ClientGone(Exception):
    """The client disconnected before its upload was decoded: nothing is done for nobody."""


@dataclass(frozen=True)
class Prepared:
    """A decoded upload and the pieces it is transcribed in (none: a long upload with no speech)."""

    audio: Audio
    pieces: tuple[Piece, ...]

    @property
    def duration(self) -> float:
        return self.audio.duration

    @property
    def bulk(self) -> bool:
        """Long uploads are scheduled as bulk work (they take turns, and leave a lane to short ones)."""
        return self.duration > SHORT_S

    @property
    def whole(self) -> bool:
        """One piece that is the whole clip: its transcript needs no stitching."""
        return len(self.pieces) == 1 and self.pieces[0] == Piece(0, len(self.audio.samples))

    def arrays(self) -> list[np.ndarray]:
        """The pieces' samples (views of the decoded audio)."""
        return [self.audio.samples[p.start : p.end] for p in self.pieces]

    def place(self, index: int, part: Transcript) -> tuple[Segment, ...]:
        """Piece ``index``'s segments at their times in the whole upload."""
        if self.whole:
            return part.segments
        piece = stitch([self.pieces[index]], [part], duration=self.duration, language=part.language)
        return piece.segments

    def assemble(self, parts: list[Transcript], *, model: str, engine: str) -> Transcript:
        """One transcript from the pieces' transcripts (in piece order)."""
        if self.whole:
            return parts[0]
        if not self.pieces:
            return make_transcript([], language=None, duration=self.duration, model=model, engine=engine)
        return stitch(self.pieces, parts, duration=self.duration, language=parts[0].language)


def delta_text(segments: tuple[Segment, ...]) -> str:
    """The text a run of segments adds (joined deltas equal the final transcript's text)."""
    return clean_text(" ".join(s.text for s in segments))


def prepare(
    file: IO[bytes],
    name: str,
    *,
    max_seconds: float,
    min_seconds: float,
    split: bool,
    cancelled: threading.Event,
    metrics: Metrics,
) -> Prepared:
    """Decode an upload (in a decode-pool thread) and plan its pieces; raises :class:`ApiError`."""
    from ..audio import decode_audio

    if cancelled.is_set():
        raise ClientGone()
    metrics.decodes_in_flight.inc()
    try:
        audio = decode_audio(file, name=name, max_seconds=max_seconds)
        if audio.duration < min_seconds:
            raise ApiError(
                400,
                "audio_too_short",
                f"{name}: the audio is {audio.duration:.3f} s long; the shortest this server accepts "
                f"is {min_seconds:g} s",
                param="file",
            )
        if audio.duration <= SHORT_S or not split:
            return Prepared(audio, (Piece(0, len(audio.samples)),))
        from ..vad import split_on_silence

        return Prepared(audio, tuple(split_on_silence(audio.samples)))
    except AudioTooLongError as exc:
        raise too_long(exc.seconds, max_seconds, at_least="at least" in exc.message) from exc
    except AudioError as exc:
        status = 422 if "no audio samples" in exc.message or "zero duration" in exc.message else 415
        raise ApiError(status, "invalid_audio", exc.message, param="file") from exc
    except EnvironmentProblem as exc:
        raise ApiError(500, exc.code, exc.message, kind="server_error") from exc
    finally:
        metrics.decodes_in_flight.dec()


def too_long(seconds: float, limit: float, *, at_least: bool = False) -> ApiError:
    """413 audio_too_long, said the same way whether the header or the decoder found it."""
    said = f"at least {seconds:.0f} s" if at_least else f"{seconds:.0f} s"
    return ApiError(
        413,
        "audio_too_long",
        f"the audio is {said}; this server accepts up to {limit:g} s (TWI_ASR_MAX_AUDIO_S)",
        param="file",
    )


__all__ = ["ClientGone", "Prepared", "delta_text", "prepare", "too_long"]
