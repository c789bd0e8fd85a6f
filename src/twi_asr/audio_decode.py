"""Internal: the decoders behind :func:`twi_asr.audio.decode_audio` (libsndfile and PyAV), streaming.

Each decoder reads its input block by block (libsndfile: ~2 s ``SoundFile.read``
calls; PyAV: frame by frame), mixes each block to mono and hands it to a
:class:`~twi_asr.audio_stream.SampleSink`, so no native-rate copy of the whole
file is ever held. Before decoding anything, the duration the header or
container declares is checked against the caller's limit. What went wrong
without stopping the decode (a file that ends early, corrupt packets
skipped) comes back as warnings. The routing rules and error messages are
described in :mod:`twi_asr.audio`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from twi_asr.audio_stream import SAMPLE_RATE, SampleSink, check_header_seconds
from twi_asr.errors import AudioError, DependencyMissingError, InputError, TwiAsrError

# Leading magic bytes of the containers libsndfile decodes natively and exactly.
SOUNDFILE_MAGIC: tuple[bytes, ...] = (
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

_BLOCK_SECONDS = 2.0  # libsndfile read size at the native rate
# PyAV's raw ADTS duration is a bitrate estimate, seen 3-11% off: too rough to refuse a file on.
_ESTIMATED_DURATION_FORMATS = frozenset({"aac"})
# libsndfile's log for a chunk the file is too short to hold, e.g. "data : 192000 (should be 96000)".
_SHOULD_BE = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclass(frozen=True)
class Source:
    """Where to read an input from: a regular file's ``path``, or a seekable binary ``fh``."""

    label: str
    head: bytes  # the first bytes, for sniffing the format
    path: str | None = None
    fh: IO[bytes] | None = None

    def rewound(self) -> IO[bytes]:
        """The file object, back at its start (each decoder reads it from the beginning)."""
        assert self.fh is not None, "a Source has a path or a file object"
        self.fh.seek(0)
        return self.fh


class DecodeFailed(Exception):
    """One decoder could not produce samples; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DecoderMissing(Exception):
    """The decoder's library is not importable."""


_Decoder = Callable[[Source, "float | None"], tuple[SampleSink, list[str]]]


def decode(src: Source, max_seconds: float | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Run the decoders in the order the header suggests; return the first success and its warnings."""
    decoders: list[tuple[str, _Decoder]] = [("soundfile", _decode_soundfile), ("PyAV", _decode_av)]
    if not src.head.startswith(SOUNDFILE_MAGIC):
        decoders.reverse()

    reasons: list[str] = []
    missing: list[str] = []
    for decoder_name, decoder in decoders:
        if decoder_name == "soundfile" and reasons and looks_like_mp3(src.head):
            # PyAV already failed on it; libsndfile's libmpg123 would only add stderr noise.
            continue
        try:
            sink, warnings = decoder(src, max_seconds)
        except DecoderMissing:
            missing.append(decoder_name)
            continue
        except DecodeFailed as exc:
            reasons.append(f"{decoder_name}: {exc.reason}")
            continue
        if sink.native_samples and decoder_name == "soundfile" and _ended_early(warnings):
            # libsndfile stops at the first malformed Ogg page (a chained or remuxed stream):
            # FFmpeg reads past it, so it gets a try, and the longer result wins.
            sink, warnings = _longer_with_av(src, max_seconds, sink, warnings, missing)
        if sink.native_samples:
            samples = sink.finish()
            if samples.size == 0:
                raise AudioError(
                    f"{src.label}: too short to decode (less than one sample at {SAMPLE_RATE} Hz)"
                )
            return samples, tuple(warnings)
        reasons.append(f"{decoder_name}: no audio samples")

    label = src.label
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


def _ended_early(warnings: list[str]) -> bool:
    return any(w.startswith("the file ends early") for w in warnings)


def _longer_with_av(
    src: Source, max_seconds: float | None, sink: SampleSink, warnings: list[str], missing: list[str]
) -> tuple[SampleSink, list[str]]:
    """PyAV's decode of ``src`` when it gets further than libsndfile's ``sink`` did."""
    try:
        other, other_warnings = _decode_av(src, max_seconds)
    except DecoderMissing:
        missing.append("PyAV")
        return sink, warnings
    except (DecodeFailed, AudioError):
        return sink, warnings
    if other.native_seconds > sink.native_seconds + 0.5:
        return other, other_warnings
    return sink, warnings


def looks_like_mp3(head: bytes) -> bool:
    """True for an ID3 tag or an MPEG audio frame sync at the start of the input."""
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


# --------------------------------------------------------------------------- libsndfile


def _decode_soundfile(src: Source, max_seconds: float | None) -> tuple[SampleSink, list[str]]:
    """Decode with libsndfile; exact for WAV/FLAC/Ogg. Raises DecodeFailed/DecoderMissing."""
    try:
        import soundfile as sf
    except (ImportError, OSError) as exc:  # OSError: the libsndfile shared library is missing
        raise DecoderMissing() from exc
    label = src.label
    try:
        f = sf.SoundFile(src.path if src.path is not None else src.rewound())
    except MemoryError:
        raise
    except Exception as exc:  # libsndfile errors come in several types
        raise DecodeFailed(_reason(exc, src)) from exc
    warnings: list[str] = []
    with f:
        rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        if rate <= 0:
            raise DecodeFailed(f"invalid sample rate {rate}")
        if not 0 <= frames < 2**62:  # e.g. a FLAC whose STREAMINFO has no length: PyAV reads it
            raise DecodeFailed("the header gives no length")
        check_header_seconds(label, frames / rate, max_seconds)
        sink = SampleSink(label, max_seconds, frames / rate)
        promised = _promised_frames(f, frames)
        block = max(4096, int(_BLOCK_SECONDS * rate))
        read = 0
        if frames <= block:  # a short clip: one read of at most one block
            f.close()
            try:
                data = sf.read(
                    src.path if src.path is not None else src.rewound(), dtype="float32", always_2d=True
                )[0]
            except MemoryError:
                raise
            except Exception as exc:
                raise DecodeFailed(_reason(exc, src)) from exc
            sink.add(_mix_down(data), rate)
            read = data.shape[0]
        else:
            out = np.empty((block, channels), dtype=np.float32)
            while True:
                try:
                    data = f.read(block, dtype="float32", always_2d=True, out=out)
                except MemoryError:
                    raise
                except Exception as exc:  # a read error part-way: keep the prefix
                    if not read:
                        raise DecodeFailed(_reason(exc, src)) from exc
                    warnings.append(_ends_early(sink.native_seconds, reason=_reason(exc, src)))
                    promised = read
                    break
                if not data.shape[0]:
                    break
                sink.add(_mix_down(data), rate)
                read += data.shape[0]
    if read and read < promised:
        warnings.append(_ends_early(sink.native_seconds, promised=promised / rate))
    return sink, warnings


def _promised_frames(f: Any, frames: int) -> int:
    """How many frames the header promised: more than ``frames`` when libsndfile clamped a
    data chunk that the file is too short to hold (a WAV/AIFF cut off part-way)."""
    try:
        match = _SHOULD_BE.search(f.extra_info)
    except Exception:  # the log is a nicety
        return frames
    if match is None or int(match.group(2)) <= 0:
        return frames
    declared, present = int(match.group(1)), int(match.group(2))
    return frames * declared // present if declared > present else frames


# --------------------------------------------------------------------------- PyAV


def _decode_av(src: Source, max_seconds: float | None) -> tuple[SampleSink, list[str]]:
    """Decode the first audio stream with PyAV (bundled FFmpeg); other streams are not decoded.

    Damaged packets are skipped; a read error part-way keeps what decoded so
    far; both become warnings. Raises AudioError for "no audio stream"
    (definitive), otherwise DecodeFailed/DecoderMissing.
    """
    try:
        import av
    except ImportError as exc:
        raise DecoderMissing() from exc

    label = src.label
    skipped = 0
    failed_last = False
    first_error: str | None = None
    last_error: str | None = None
    warnings: list[str] = []
    # A file object, not a path string: FFmpeg would interpret "http:..." or
    # "concat:..." in a file name as a protocol.
    try:
        fh = open(src.path, "rb") if src.path is not None else src.rewound()  # noqa: SIM115
    except OSError as exc:  # removed or made unreadable since it was checked
        raise InputError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    try:
        with av.open(fh, mode="r", metadata_errors="replace") as container:
            if not container.streams.audio:
                kinds = sorted({s.type for s in container.streams})
                found = f" (it has only {', '.join(kinds)} streams)" if kinds else ""
                raise AudioError(f"{label}: has no audio stream{found}; is it a video without sound?")
            stream = container.streams.audio[0]
            header = av_header_seconds(container)
            trusted = container.format.name not in _ESTIMATED_DURATION_FORMATS
            check_header_seconds(label, header if trusted else None, max_seconds)
            sink = SampleSink(label, max_seconds, header)
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except MemoryError:
                        raise
                    except Exception as exc:  # skip a corrupt packet, like ffmpeg does
                        skipped += 1
                        last_error = _reason(exc, src)
                        first_error = first_error or last_error
                        failed_last = True
                        continue
                    failed_last = failed_last and not packet.size  # the final flush packet is empty
                    for frame in frames:
                        sink.add(_frame_to_mono(frame), int(frame.sample_rate))
            except (TwiAsrError, MemoryError):
                raise
            except Exception as exc:  # truncated/damaged container: keep the prefix
                first_error = first_error or _reason(exc, src)
                if sink.native_samples:
                    warnings.append(_ends_early(sink.native_seconds, reason=_reason(exc, src)))
            else:
                if failed_last and sink.native_samples:  # a packet cut in half: the file ends there
                    skipped -= 1
                    warnings.append(_ends_early(sink.native_seconds, reason=last_error))
    except (TwiAsrError, MemoryError):
        raise
    except Exception as exc:  # av.open: not a media file at all
        raise DecodeFailed(_reason(exc, src)) from exc
    finally:
        if src.path is not None:
            fh.close()

    if not sink.native_samples and first_error is not None:
        raise DecodeFailed(f"nothing decodable ({first_error})")
    decoded = sink.native_seconds
    if trusted and header and not warnings and header - decoded > max(1.0, 0.05 * header):
        warnings.append(_ends_early(decoded, promised=header))  # e.g. an MP3 cut off at a frame edge
    if skipped and sink.native_samples:
        plural = "s" if skipped > 1 else ""
        warnings.append(f"skipped {skipped} corrupt packet{plural} (first: {first_error})")
    return sink, warnings


def av_header_seconds(container: Any) -> float | None:
    """The duration PyAV reads from the container: audio stream first, then the whole container."""
    for stream in container.streams.audio:
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


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


# --------------------------------------------------------------------------- shared


def _mix_down(frames: np.ndarray) -> np.ndarray:
    """Average a (samples, channels) float32 array to contiguous mono (a new array).

    A matrix-vector product: ~10x faster than ``mean(axis=1)``, which numpy
    runs as a slow reduction over the short channel axis.
    """
    channels = frames.shape[1]
    if channels == 1:
        return np.array(frames[:, 0], dtype=np.float32)  # a copy: the block buffer is reused
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    return np.ascontiguousarray(frames @ weights, dtype=np.float32)


def _ends_early(decoded: float, *, reason: str | None = None, promised: float | None = None) -> str:
    detail = f" ({reason})" if reason else f" of the {promised:.1f} s its header promises"
    return f"the file ends early: decoded {decoded:.1f} s{detail}"


def _reason(exc: BaseException, src: Source) -> str:
    """A one-line reason from a decoder exception, without repeating the file name."""
    strerror = getattr(exc, "strerror", None)  # av.error.FFmpegError: no "[Errno N]" noise
    text = (strerror if isinstance(strerror, str) and strerror else str(exc)).strip() or type(exc).__name__
    # soundfile puts the path or the file object (quoted) into its messages; ours names the input.
    for name in (src.path or src.label, src.fh):
        if name is not None:
            text = text.replace(f" {name!r}", "").replace(repr(name), "")
    return " ".join(text.split())
