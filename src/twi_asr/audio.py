"""Turn any audio or video input into the one thing Whisper eats: float32 mono 16 kHz.

Every engine, the CLI and the HTTP server go through :func:`decode_audio`, so
the rules for "what is a valid input" and the error messages a user sees live
in one place.

Decode strategy
---------------
* The first bytes of the input are sniffed. Containers that libsndfile reads
  natively and exactly (WAV/RF64/W64, FLAC, Ogg Vorbis/Opus, AIFF, AU, CAF) go
  to ``soundfile`` first: it is fast and bit-exact. Everything else (MP3,
  M4A/AAC, WebM, MP4/MKV/MOV video, AMR, WMA...) goes to PyAV (``av``) first,
  which bundles its own FFmpeg libraries, so no system ffmpeg is needed.
  MP3 deliberately goes to PyAV although libsndfile >= 1.1 can read it: the
  libmpg123 inside libsndfile writes warnings straight to stderr on damaged
  files and recovers less of a truncated file than FFmpeg does.
* Whichever decoder did not go first is the fallback, so a mislabelled or
  odd file still gets both chances (except an MP3 that PyAV rejected:
  libsndfile would fail too, noisily). If PyAV is not installed and soundfile
  cannot read an input, :class:`DependencyMissingError` says to ``pip install av``.
* Decoding streams (:mod:`twi_asr.audio_decode`, :mod:`twi_asr.audio_stream`):
  blocks of ~2 s (libsndfile) or single frames (PyAV) are averaged to mono at
  the native rate (cheaper than resampling every channel), resampled with a
  ``soxr`` stream at quality ``"HQ"`` (the same samples as a one-shot
  resample: a steep linear-phase filter with ~20-bit precision, noise
  ~-120 dB, already beyond what 16-bit sources and Whisper's log-mel front
  end can resolve; the default ``"VHQ"`` costs ~15% more time and buys
  nothing for speech recognition) and written into one growing 16 kHz
  buffer. Peak memory is about the size of the 16 kHz result, whatever the
  input's rate and channel count: never a native-rate copy of the whole file.
* ``max_seconds``: the duration the header or container declares is checked
  before anything is decoded (an Ogg/Opus "bomb", hours of silence in a few
  MB, is refused at once); since headers lie or are missing (raw ADTS AAC),
  the decoded 16 kHz samples are also counted as they arrive, and decoding
  stops as soon as they pass the limit. Both raise
  :class:`~twi_asr.errors.AudioTooLongError`.

Damaged inputs
--------------
* Empty files, non-audio files, videos without an audio stream, and files
  that decode to zero samples (e.g. a WAV that is only its 44-byte header)
  raise :class:`AudioError` naming the input.
* A truncated file that is partly decodable (an MP3 or WAV cut in half)
  returns the decodable prefix rather than failing: for transcription, most
  of a recording beats none, and this is what ffmpeg itself does. Corrupt
  packets in the middle of a stream are skipped, as ffmpeg's CLI does; only
  when nothing at all decodes is it an error. Both are reported in
  :attr:`Audio.warnings` ("the file ends early: decoded 12.3 s (...)"). An
  MP4/M4A whose index ("moov" atom) was cut off is not decodable at all and
  raises :class:`AudioError`.
* Silence is valid audio and decodes to zeros; NaN or infinite samples (only
  possible in float files) raise :class:`AudioError`.
* Whatever a damaged header claims, the outcome is an :class:`Audio` or an
  :class:`AudioError` in time and memory bounded by the bytes actually there
  (``bench/fuzz_audio.py`` checks it on mutated files of every format): a
  sample rate outside 4 kHz..1 MHz is refused (1 Hz would make each sample
  16,000), no libsndfile block or FFmpeg allocation is sized past a fixed cap
  by a header's length, rate or channel count, and a stream whose packets
  fail 1,000 times in a row is not read further.

``av``, ``soundfile`` and ``soxr`` are imported inside the functions that use
them (in the lower modules) so that ``import twi_asr.audio`` stays cheap
(CLI ``--help``, the server's import time, tests that never decode).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from typing import IO, BinaryIO

import numpy as np

from twi_asr import audio_stream
from twi_asr.audio_av import av_header_seconds, limit_ffmpeg_allocations, open_options
from twi_asr.audio_decode import SOUNDFILE_MAGIC, Source, decode
from twi_asr.errors import AudioError, InputError, InputNotFoundError, UsageError

SAMPLE_RATE = audio_stream.SAMPLE_RATE
"""The sample rate (Hz) every Whisper model expects, and the one we decode to."""

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".m4a",
        ".aac",
        ".webm",
        ".mp4",
        ".mkv",
        ".mov",
        ".wma",
        ".aiff",
        ".aif",
        ".amr",
        ".3gp",
    }
)
"""Extensions (lowercase, with the dot) treated as media when scanning a folder."""


@dataclass(frozen=True, eq=False)
class Audio:
    """A decoded clip, ready for any engine.

    ``samples`` is a 1-D float32 array of mono audio at :data:`SAMPLE_RATE`,
    nominally in [-1, 1]. ``name`` is what error messages and outputs call the
    clip (the path as given, or a caller-chosen name for bytes). ``warnings``
    says what was wrong with an input that still decoded (it ends early,
    corrupt packets were skipped), one sentence each; empty for a clean file.

    ``eq=False``: dataclass equality would compare the numpy arrays with
    ``==`` and fail with "truth value of an array is ambiguous"; identity
    equality (and hashing) is what a frozen value holding an array can offer.
    """

    samples: np.ndarray
    name: str
    warnings: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return float(self.samples.shape[0]) / SAMPLE_RATE


def decode_audio(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    max_seconds: float | None = None,
) -> Audio:
    """Decode a file path, raw bytes or a binary file object to float32 mono 16 kHz :class:`Audio`.

    Accepts any container/codec soundfile or PyAV can read (WAV, FLAC, Ogg
    Vorbis/Opus, MP3, M4A/AAC, WebM, and the audio track of MP4/MKV/MOV
    video; video streams are ignored), at any sample rate, bit depth and
    channel count. Channels are averaged; the result is resampled to 16 kHz.
    Memory stays near the size of the result (see the module docstring).

    Args:
        source: A path (``str`` or ``os.PathLike``), the file's bytes (``bytes``,
            ``bytearray`` or ``memoryview``, not copied), or a seekable binary
            file object (e.g. an upload's spooled temporary file), read from
            its start; its position afterwards is unspecified.
        name: What to call the input in errors and in the result. Defaults to
            the path as given, ``"<bytes>"`` for bytes, and the file object's
            ``name`` (or ``"<file>"``) for a file object.
        max_seconds: Refuse inputs longer than this: from the header before
            decoding, else as soon as the decoded audio passes it.

    Raises:
        InputNotFoundError: The path does not exist.
        InputError: The path is a directory or cannot be read (permissions).
        AudioTooLongError: The input is longer than ``max_seconds``.
        AudioError: The input is empty, not audio, has no audio stream,
            decodes to nothing, or contains NaN/inf samples.
        DependencyMissingError: The input needs PyAV (or soxr) and it is not
            installed.
        UsageError: ``max_seconds`` is not a positive number.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise UsageError(f"max_seconds must be a positive number of seconds, not {max_seconds!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        fh: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else _BufferReader(source)
        src = _file_source(fh, label, "input")
    elif isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        label = name if name is not None else path
        head, data = _check_path(path, label)
        if data is not None:  # a pipe or device (e.g. /dev/stdin): decode what was read from it
            src = Source(label=label, head=head, fh=io.BytesIO(data))
        else:
            src = Source(label=label, head=head, path=path)
    else:
        own_name = getattr(source, "name", None)
        label = name if name is not None else own_name if isinstance(own_name, str) else "<file>"
        src = _file_source(source, label, "file")
    samples, warnings = decode(src, max_seconds)
    return Audio(samples=samples, name=label, warnings=warnings)


def probe_duration(path: str | os.PathLike[str] | BinaryIO) -> float | None:
    """Return the duration of a media file in seconds without decoding it, or ``None``.

    Meant for progress bars and ETAs, so it never raises: a missing,
    unreadable or undecodable file, or one whose header carries no duration,
    gives ``None``. Reads the soundfile header for libsndfile's own containers
    (WAV, FLAC, Ogg...), otherwise the duration PyAV reads from the container
    (audio stream first, then the container's overall duration). Header values
    can be off for damaged or VBR files; :func:`decode_audio` is the authority.
    A seekable binary file object is probed from its start and left where it was.
    """
    try:
        if isinstance(path, (str, os.PathLike)):
            p = os.fsdecode(os.fspath(path))
            if not os.path.isfile(p):
                return None
            with open(p, "rb") as fh:
                return _probe(fh, p)
        position = path.tell()
        try:
            return _probe(path, path)
        finally:
            path.seek(position)
    except Exception:  # a probe must never break a progress bar
        return None


# --------------------------------------------------------------------------- helpers


def _probe(fh: IO[bytes], target: str | IO[bytes]) -> float | None:
    fh.seek(0)
    head = fh.read(12)
    # Same routing as decode_audio: libsndfile only for its native containers (its
    # libmpg123 would print warnings to stderr for damaged MP3s).
    if head.startswith(SOUNDFILE_MAGIC):
        try:
            import soundfile as sf

            fh.seek(0)
            info = sf.info(target)
            if info.samplerate > 0 and 0 < info.frames < 2**62:
                return float(info.frames) / float(info.samplerate)
        except Exception:  # unreadable by libsndfile: try PyAV
            pass
    try:
        import av
    except ImportError:
        return None
    limit_ffmpeg_allocations(av)
    fh.seek(0)
    with av.open(fh, mode="r", metadata_errors="replace", container_options=open_options(head)) as container:
        if container.format.name == "aac" and container.streams.audio:
            # Raw ADTS has no duration in any header and FFmpeg's bitrate estimate was seen 11%
            # off; demuxing (no decoding) reads only frame headers: 1024 samples per frame.
            stream = container.streams.audio[0]
            frames = sum(1 for packet in container.demux(stream) if packet.size)
            return frames * 1024 / float(stream.sample_rate) if stream.sample_rate else None
        return av_header_seconds(container)


def _file_source(fh: IO[bytes], label: str, kind: str) -> Source:
    """A Source for a file object (or bytes wrapped in one); a non-seekable one is read into memory."""
    seekable = getattr(fh, "seekable", None)
    if not (callable(seekable) and seekable()):
        fh = io.BytesIO(fh.read())
    fh.seek(0)
    head = fh.read(12)
    if not head:
        raise AudioError(f"{label}: empty {kind} (0 bytes), nothing to decode")
    return Source(label=label, head=head, fh=fh)


class _BufferReader(io.RawIOBase):
    """A read-only, seekable file over a bytes-like object, without copying it (BytesIO would)."""

    def __init__(self, data: bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def _check_path(path: str, label: str) -> tuple[bytes, bytes | None]:
    """Validate a path before decoding.

    Returns the first bytes (for sniffing the format) and, for a pipe or
    device such as ``/dev/stdin``, its whole content: reading the head would
    consume it, and the decoders need a seekable input anyway.
    """
    if not os.path.exists(path):
        raise InputNotFoundError(f"cannot read audio: no such file: {path}")
    if os.path.isdir(path):
        raise InputError(f"{label}: is a directory, not an audio file (pass the files inside it instead)")
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
        with open(path, "rb") as fh:
            data = fh.read() if not regular else None
            head = data[:12] if data is not None else fh.read(12)
    except OSError as exc:
        raise InputError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    if not head:
        raise AudioError(f"{label}: empty file (0 bytes), nothing to decode")
    return head, data


__all__ = ["AUDIO_EXTENSIONS", "SAMPLE_RATE", "Audio", "decode_audio", "probe_duration"]
