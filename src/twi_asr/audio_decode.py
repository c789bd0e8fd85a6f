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

from twi_asr.audio_av import (
    av_header_seconds,
    frame_to_mono,
    limit_ffmpeg_allocations,
    open_options,
    reraise_oom,
)
from twi_asr.audio_stream import SAMPLE_RATE, SampleSink, check_header_seconds, mix_down, rate_problem
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
# ... and at most this many samples over all channels (16 MiB of float32): a header's channel count
# and rate must not size a block (1024 channels at 1 MHz would be 8 GiB).
_BLOCK_SAMPLES = 1 << 22
# PyAV's raw ADTS duration is a bitrate estimate, seen 3-11% off: too rough to refuse a file on.
_ESTIMATED_DURATION_FORMATS = frozenset({"aac"})
# Undecodable packets in a row after which the rest of a stream is taken as not audio: a damaged WAV
# header made FFmpeg cut 0.5 MB into 136,000 packets that each failed (seconds of futile work).
_MAX_FAILED_IN_A_ROW = 1000
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
        problem = rate_problem(rate)
        if problem is not None:
            raise DecodeFailed(problem)
        if not 0 <= frames < 2**62:  # e.g. a FLAC whose STREAMINFO has no length: PyAV reads it
            raise DecodeFailed("the header gives no length")
        check_header_seconds(label, frames / rate, max_seconds)
        sink = SampleSink(label, max_seconds, frames / rate)
        promised = _promised_frames(f, frames)
        block = max(1024, min(int(_BLOCK_SECONDS * rate), _BLOCK_SAMPLES // max(channels, 1)))
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
            sink.add(mix_down(data), rate)
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
                sink.add(mix_down(data), rate)
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
    far; both become warnings. A frame at an implausible sample rate makes its
    packet a damaged one; after 1,000 failed packets in a row the rest is not read.
    FFmpeg's single allocations are capped (:mod:`twi_asr.audio_av`), and its
    ENOMEM is a damaged file, not an out-of-memory process. Raises AudioError
    for "no audio stream" (definitive), otherwise DecodeFailed/DecoderMissing.
    """
    try:
        import av
    except ImportError as exc:
        raise DecoderMissing() from exc

    limit_ffmpeg_allocations(av)
    label = src.label
    skipped = in_a_row = 0
    failed_last = False
    first_error: str | None = None
    last_exc: Exception | None = None
    warnings: list[str] = []
    # A file object, not a path string: FFmpeg would interpret "http:..." or
    # "concat:..." in a file name as a protocol.
    try:
        fh = open(src.path, "rb") if src.path is not None else src.rewound()  # noqa: SIM115
    except OSError as exc:  # removed or made unreadable since it was checked
        raise InputError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    try:
        options = open_options(src.head)
        with av.open(fh, mode="r", metadata_errors="replace", container_options=options) as container:
            if not container.streams.audio:
                kinds = sorted({s.type for s in container.streams})
                found = f" (it has only {', '.join(kinds)} streams)" if kinds else ""
                raise AudioError(f"{label}: has no audio stream{found}; is it a video without sound?")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # every packet would fail, one by one
                raise DecodeFailed("FFmpeg has no decoder for its audio codec")
            header = av_header_seconds(container)
            trusted = container.format.name not in _ESTIMATED_DURATION_FORMATS
            check_header_seconds(label, header if trusted else None, max_seconds)
            sink = SampleSink(label, max_seconds, header)
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                        for frame in frames:  # 1 Hz would make each sample 16,000: a damaged packet
                            if (problem := rate_problem(int(frame.sample_rate))) is not None:
                                raise ValueError(problem)
                    except Exception as exc:  # skip a corrupt packet, like ffmpeg does
                        reraise_oom(exc, av)
                        skipped, in_a_row, last_exc, failed_last = skipped + 1, in_a_row + 1, exc, True
                        first_error = first_error or _reason(exc, src)
                        if in_a_row >= _MAX_FAILED_IN_A_ROW:  # the rest is not audio: stop here
                            break
                        continue
                    in_a_row = 0
                    failed_last = failed_last and not packet.size  # the final flush packet is empty
                    for frame in frames:
                        sink.add(frame_to_mono(frame), int(frame.sample_rate))
            except TwiAsrError:
                raise
            except Exception as exc:  # truncated/damaged container: keep the prefix
                reraise_oom(exc, av)
                first_error = first_error or _reason(exc, src)
                if sink.native_samples:
                    warnings.append(_ends_early(sink.native_seconds, reason=_reason(exc, src)))
            else:
                last_error = None if last_exc is None else _reason(last_exc, src)
                if in_a_row >= _MAX_FAILED_IN_A_ROW and sink.native_samples:
                    skipped -= in_a_row
                    why = f"then {in_a_row} packets in a row failed: {last_error}"
                    warnings.append(_ends_early(sink.native_seconds, reason=why))
                elif failed_last and sink.native_samples:  # a packet cut in half: the file ends there
                    skipped -= 1
                    warnings.append(_ends_early(sink.native_seconds, reason=last_error))
    except (TwiAsrError, DecodeFailed):
        raise
    except Exception as exc:  # av.open: not a media file at all
        reraise_oom(exc, av)
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


# --------------------------------------------------------------------------- shared


def _ends_early(decoded: float, *, reason: str | None = None, promised: float | None = None) -> str:
    detail = f" ({reason})" if reason else f" of the {promised:.1f} s its header promises"
    return f"the file ends early: decoded {decoded:.1f} s{detail}"


def _reason(exc: BaseException, src: Source) -> str:
    """A one-line reason from a decoder exception, without repeating the file name."""
    if isinstance(exc, MemoryError):  # only FFmpeg's ENOMEM gets here (see audio_av.reraise_oom)
        return "it asks for more memory than FFmpeg allows (a damaged size or count in its header?)"
    strerror = getattr(exc, "strerror", None)  # av.error.FFmpegError: no "[Errno N]" noise
    text = (strerror if isinstance(strerror, str) and strerror else str(exc)).strip() or type(exc).__name__
    # soundfile puts the path or the file object (quoted) into its messages; ours names the input.
    for name in (src.fh, src.path or src.label):
        if name is not None:
            text = text.replace(f" {name!r}", "").replace(repr(name), "")
    return " ".join(text.split())
