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
* Channels are averaged to mono at the native rate (cheaper than resampling
  every channel), then resampled with ``soxr`` at quality ``"HQ"``: a steep
  linear-phase filter with ~20-bit precision (noise ~-120 dB), already
  beyond what 16-bit sources and Whisper's log-mel front end can resolve.
  The default ``"VHQ"`` (~28-bit) costs ~15% more time and buys nothing for
  speech recognition.

Damaged inputs
--------------
* Empty files, non-audio files, videos without an audio stream, and files
  that decode to zero samples (e.g. a WAV that is only its 44-byte header)
  raise :class:`AudioError` naming the input.
* A truncated file that is partly decodable (an MP3 or WAV cut in half)
  returns the decodable prefix rather than failing: for transcription, most
  of a recording beats none, and this is what ffmpeg itself does. Corrupt
  packets in the middle of a stream are skipped, as ffmpeg's CLI does; only
  when nothing at all decodes is it an error. An MP4/M4A whose index ("moov"
  atom) was cut off is not decodable at all and raises :class:`AudioError`.
* Silence is valid audio and decodes to zeros; NaN or infinite samples (only
  possible in float files) raise :class:`AudioError`.

``av``, ``soundfile`` and ``soxr`` are imported inside the functions that use
them so that ``import twi_asr.audio`` stays cheap (CLI ``--help``, the server's
import time, tests that never decode).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from twi_asr.errors import AudioError, DependencyMissingError, InputError, InputNotFoundError

SAMPLE_RATE = 16000
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

_RESAMPLE_QUALITY = "HQ"

# Leading magic bytes of the containers libsndfile decodes natively and exactly.
_SOUNDFILE_MAGIC: tuple[bytes, ...] = (
    b"RIFF",  # WAV
    b"RIFX",  # big-endian WAV
    b"RF64",  # WAV over 4 GiB
    b"riff",  # Sony Wave64
    b"fLaC",  # FLAC
    b"OggS",  # Ogg (Vorbis, Opus, FLAC)
    b"FORM",  # AIFF / AIFF-C
    b".snd",  # Sun AU
    b"caff",  # Apple CAF
)


@dataclass(frozen=True, eq=False)
class Audio:
    """A decoded clip, ready for any engine.

    ``samples`` is a 1-D float32 array of mono audio at :data:`SAMPLE_RATE`,
    nominally in [-1, 1]. ``name`` is what error messages and outputs call the
    clip (the path as given, or a caller-chosen name for bytes).

    ``eq=False``: dataclass equality would compare the numpy arrays with
    ``==`` and fail with "truth value of an array is ambiguous"; identity
    equality (and hashing) is what a frozen value holding an array can offer.
    """

    samples: np.ndarray
    name: str

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return float(self.samples.shape[0]) / SAMPLE_RATE


class _DecodeFailed(Exception):
    """Internal: one decoder could not produce samples; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _DecoderMissing(Exception):
    """Internal: the decoder's library is not importable."""


# A run of mono float32 samples at one sample rate.
_Run = tuple[int, np.ndarray]


def decode_audio(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Audio:
    """Decode a file path or raw bytes to float32 mono 16 kHz :class:`Audio`.

    Accepts any container/codec soundfile or PyAV can read (WAV, FLAC, Ogg
    Vorbis/Opus, MP3, M4A/AAC, WebM, and the audio track of MP4/MKV/MOV
    video; video streams are ignored), at any sample rate, bit depth and
    channel count. Channels are averaged; the result is resampled to 16 kHz.

    Args:
        source: A path (``str`` or ``os.PathLike``) or the file's bytes
            (e.g. an HTTP upload).
        name: What to call the input in errors and in the result. Defaults to
            the path as given, or ``"<bytes>"`` for bytes.

    Raises:
        InputNotFoundError: The path does not exist.
        InputError: The path is a directory or cannot be read (permissions).
        AudioError: The input is empty, not audio, has no audio stream,
            decodes to nothing, or contains NaN/inf samples.
        DependencyMissingError: The input needs PyAV (or soxr) and it is not
            installed.
    """
    data: bytes | None
    path: str | None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        path = None
        label = name if name is not None else "<bytes>"
        if not data:
            raise AudioError(f"{label}: empty input (0 bytes), nothing to decode")
        head = data[:12]
    else:
        path = os.fsdecode(os.fspath(source))
        label = name if name is not None else path
        head, data = _check_path(path, label)
        if data is not None:  # a pipe or device (e.g. /dev/stdin): decode what was read from it
            path = None

    runs = _decode_runs(path, data, label, head)
    samples = _finish(runs, label)
    return Audio(samples=samples, name=label)


def probe_duration(path: str | os.PathLike[str]) -> float | None:
    """Return the duration of a media file in seconds without decoding it, or ``None``.

    Meant for progress bars and ETAs, so it never raises: a missing,
    unreadable or undecodable file, or one whose header carries no duration,
    gives ``None``. Reads the soundfile header for libsndfile's own containers
    (WAV, FLAC, Ogg...), otherwise the duration PyAV reads from the container
    (audio stream first, then the container's overall duration). Header values
    can be off for damaged or VBR files; :func:`decode_audio` is the authority.
    """
    try:
        p = os.fsdecode(os.fspath(path))
        if not os.path.isfile(p):
            return None
        with open(p, "rb") as fh:
            head = fh.read(12)
        # Same routing as decode_audio: libsndfile only for its native containers (its
        # libmpg123 would print warnings to stderr for damaged MP3s).
        if head.startswith(_SOUNDFILE_MAGIC):
            try:
                import soundfile as sf

                info = sf.info(p)
                if info.samplerate > 0 and 0 < info.frames < 2**62:
                    return float(info.frames) / float(info.samplerate)
            except Exception:  # unreadable by libsndfile: try PyAV
                pass
        try:
            import av
        except ImportError:
            return None
        with open(p, "rb") as fh, av.open(fh, metadata_errors="replace") as container:
            if container.format.name == "aac" and container.streams.audio:
                # Raw ADTS has no duration in any header and FFmpeg's bitrate estimate was seen 11%
                # off; demuxing (no decoding) reads only frame headers: 1024 samples per frame.
                stream = container.streams.audio[0]
                frames = sum(1 for packet in container.demux(stream) if packet.size)
                return frames * 1024 / float(stream.sample_rate) if stream.sample_rate else None
            for stream in container.streams.audio:
                if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
                    return float(stream.duration * stream.time_base)
            if container.duration is not None and container.duration > 0:
                return float(container.duration) / 1_000_000  # AV_TIME_BASE
    except Exception:  # a probe must never break a progress bar
        return None
    return None


# --------------------------------------------------------------------------- helpers


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


def _decode_runs(path: str | None, data: bytes | None, label: str, head: bytes) -> list[_Run]:
    """Run the decoders in the order the header suggests; return the first success."""
    decoders: list[tuple[str, Callable[[str | None, bytes | None, str], list[_Run]]]] = [
        ("soundfile", _decode_soundfile),
        ("PyAV", _decode_av),
    ]
    if not head.startswith(_SOUNDFILE_MAGIC):
        decoders.reverse()

    reasons: list[str] = []
    missing: list[str] = []
    for decoder_name, decoder in decoders:
        if decoder_name == "soundfile" and reasons and _looks_like_mp3(head):
            # PyAV already failed on it; libsndfile's libmpg123 would only add stderr noise.
            continue
        try:
            runs = decoder(path, data, label)
        except _DecoderMissing:
            missing.append(decoder_name)
            continue
        except _DecodeFailed as exc:
            reasons.append(f"{decoder_name}: {exc.reason}")
            continue
        if any(chunk.size for _, chunk in runs):
            return runs
        reasons.append(f"{decoder_name}: no audio samples")

    if any(r.endswith("no audio samples") for r in reasons):  # a valid header, but nothing after it
        raise AudioError(
            f"{label}: contains no audio samples (zero duration; only a header, or cut off before the audio)"
        )
    if "PyAV" in missing:
        if "soundfile" in missing:
            raise DependencyMissingError(
                f"{label}: cannot decode audio: neither PyAV nor soundfile is installed; "
                "install them with: pip install av soundfile"
            )
        raise DependencyMissingError(
            f"{label}: soundfile cannot read this input ({'; '.join(reasons)}); decoding MP3, M4A/AAC, "
            "WebM, video and other formats needs PyAV: pip install av"
        )
    # The reason from the decoder meant for this kind of file is the useful one; the
    # fallback's complaint ("Format not recognised", a libsndfile "possibly a pipe?") is noise.
    raise AudioError(f"{label}: not audio, or too damaged to decode ({reasons[0]})")


def _looks_like_mp3(head: bytes) -> bool:
    """True for an ID3 tag or an MPEG audio frame sync at the start of the input."""
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _decode_soundfile(path: str | None, data: bytes | None, label: str) -> list[_Run]:
    """Decode with libsndfile; exact for WAV/FLAC/Ogg. Raises _DecodeFailed/_DecoderMissing."""
    try:
        import soundfile as sf
    except (ImportError, OSError) as exc:  # OSError: the libsndfile shared library is missing
        raise _DecoderMissing() from exc
    src: str | IO[bytes] = path if path is not None else io.BytesIO(data or b"")
    try:
        frames, rate = sf.read(src, dtype="float32", always_2d=True)
    except MemoryError:
        raise
    except Exception as exc:  # libsndfile errors come in several types
        raise _DecodeFailed(_reason(exc, path or label)) from exc
    if rate <= 0:
        raise _DecodeFailed(f"invalid sample rate {rate}")
    return [(int(rate), _mix_down(frames))]


def _decode_av(path: str | None, data: bytes | None, label: str) -> list[_Run]:
    """Decode the first audio stream with PyAV (bundled FFmpeg); other streams are not decoded.

    Damaged packets are skipped; a read error part-way returns what decoded
    so far. Raises AudioError for "no audio stream" (definitive), otherwise
    _DecodeFailed/_DecoderMissing.
    """
    try:
        import av
    except ImportError as exc:
        raise _DecoderMissing() from exc

    runs: list[_Run] = []
    pending: list[np.ndarray] = []
    pending_rate = 0
    first_error: str | None = None

    def flush() -> None:
        if pending:
            runs.append((pending_rate, np.concatenate(pending)))
            pending.clear()

    # A file object, not a path string: FFmpeg would interpret "http:..." or
    # "concat:..." in a file name as a protocol.
    try:
        fh: IO[bytes] = open(path, "rb") if path is not None else io.BytesIO(data or b"")  # noqa: SIM115
    except OSError as exc:  # removed or made unreadable since _check_path looked
        raise InputError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    try:
        with fh, av.open(fh, metadata_errors="replace") as container:
            if not container.streams.audio:
                kinds = sorted({s.type for s in container.streams})
                found = f" (it has only {', '.join(kinds)} streams)" if kinds else ""
                raise AudioError(f"{label}: has no audio stream{found}; is it a video without sound?")
            stream = container.streams.audio[0]
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except MemoryError:
                        raise
                    except Exception as exc:  # skip a corrupt packet, like ffmpeg does
                        first_error = first_error or _reason(exc, path or label)
                        continue
                    for frame in frames:
                        if frame.sample_rate != pending_rate:
                            flush()
                            pending_rate = int(frame.sample_rate)
                        pending.append(_frame_to_mono(frame))
            except MemoryError:
                raise
            except Exception as exc:  # truncated/damaged container: keep the prefix
                first_error = first_error or _reason(exc, path or label)
            flush()
    except (AudioError, MemoryError):
        raise
    except Exception as exc:  # av.open: not a media file at all
        raise _DecodeFailed(_reason(exc, path or label)) from exc

    if not any(chunk.size for _, chunk in runs) and first_error is not None:
        raise _DecodeFailed(f"nothing decodable ({first_error})")
    return runs


def _frame_to_mono(frame: Any) -> np.ndarray:
    """Convert one av.AudioFrame (any sample format/layout) to float32 mono."""
    arr = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T  # packed: (1, n*ch) interleaved -> (ch, n)
    if arr.dtype.kind == "f":
        out = arr.astype(np.float32, copy=False)
    elif arr.dtype.kind == "u":  # u8: unsigned, centred at 128
        out = (arr.astype(np.float32) - 128.0) / 128.0
    else:  # s16/s32/s64
        out = arr.astype(np.float32) / float(2 ** (arr.dtype.itemsize * 8 - 1))
    return _mix_down(out.T)


def _mix_down(frames: np.ndarray) -> np.ndarray:
    """Average a (samples, channels) float32 array to contiguous mono.

    A matrix-vector product: ~10x faster than ``mean(axis=1)``, which numpy
    runs as a slow reduction over the short channel axis.
    """
    channels = frames.shape[1]
    if channels == 1:
        return np.ascontiguousarray(frames[:, 0], dtype=np.float32)
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    return np.ascontiguousarray(frames @ weights, dtype=np.float32)


def _finish(runs: list[_Run], label: str) -> np.ndarray:
    """Check for NaN/inf, resample every run to 16 kHz and join them."""
    out: list[np.ndarray] = []
    for rate, chunk in runs:
        if chunk.size == 0:
            continue
        if not np.isfinite(chunk).all():
            raise AudioError(f"{label}: contains NaN or infinite samples (a corrupt float audio file?)")
        out.append(_resample(chunk, rate, label))
    samples = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise AudioError(f"{label}: too short to decode (less than one sample at {SAMPLE_RATE} Hz)")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _resample(samples: np.ndarray, rate: int, label: str) -> np.ndarray:
    """Resample mono float32 samples from ``rate`` to 16 kHz with soxr (HQ)."""
    if rate == SAMPLE_RATE:
        return samples
    try:
        import soxr
    except ImportError as exc:
        raise DependencyMissingError(
            f"{label}: resampling {rate} Hz audio to {SAMPLE_RATE} Hz needs soxr: pip install soxr"
        ) from exc
    try:
        return np.asarray(soxr.resample(samples, rate, SAMPLE_RATE, quality=_RESAMPLE_QUALITY), np.float32)
    except MemoryError:
        raise
    except Exception as exc:  # never leak a raw soxr error
        raise AudioError(f"{label}: cannot resample from {rate} Hz ({exc})") from exc


def _reason(exc: BaseException, path: str) -> str:
    """A one-line reason from a decoder exception, without repeating the file name."""
    strerror = getattr(exc, "strerror", None)  # av.error.FFmpegError: no "[Errno N]" noise
    text = (strerror if isinstance(strerror, str) and strerror else str(exc)).strip() or type(exc).__name__
    # soundfile puts the path (quoted) into its messages; our message already names the input.
    for quoted in (f" '{path}'", f"'{path}'"):
        text = text.replace(quoted, "")
    return " ".join(text.split())


__all__ = ["AUDIO_EXTENSIONS", "SAMPLE_RATE", "Audio", "decode_audio", "probe_duration"]
