"""Internal: PyAV helpers for :mod:`twi_asr.audio_decode`: frames to mono, FFmpeg's memory cap and errors.

Kept apart from the decode loop because each works around a way a damaged
input used to get past the decoder's contract (found by ``bench/fuzz_audio.py``):
PyAV's ``frame.to_ndarray()`` crashed on 8+ planar channels, FFmpeg zero-filled
gigabytes for a header's claimed size, FFmpeg's ENOMEM came out as a bare
``MemoryError``, and a WAV header's byte rate sized FFmpeg's packets. ``av`` is
passed in by the caller, which imported it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from twi_asr.audio_stream import mix_down

FFMPEG_MAX_ALLOC = 256 << 20
"""The largest single allocation PyAV's FFmpeg may make once decoding starts (FFmpeg's default: 2 GiB)."""

# FFmpeg's WAV demuxer sizes its packets from the header's byte rate: a damaged "1 byte/s" made
# 4-byte packets, 136,000 for 0.5 MB, over a second in av.open alone. A fixed size bounds the count.
_RIFF_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff")
_WAV_PACKET_BYTES = 65536

_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
                  "dbl": np.float64}  # fmt: skip


@functools.cache
def limit_ffmpeg_allocations(av: Any) -> bool:
    """Cap any single allocation by PyAV's FFmpeg at :data:`FFMPEG_MAX_ALLOC`, once per process.

    FFmpeg sizes some buffers from header fields before it reads what they describe: a WAV whose
    LIST chunk claims 4 GB made ``av.open`` zero-fill 1.9 GB for a 0.5 MB upload. Over the cap
    FFmpeg fails with ENOMEM instead (a damaged file, see :func:`reraise_oom`); audio never needs
    blocks that big. ``av_max_alloc`` is libavutil's own setting for this. PyAV does not wrap it,
    so it is called through ctypes on the libavutil PyAV loaded (found in ``/proc/self/maps``, else
    beside the PyAV package). It applies to everything using PyAV in this process. Returns True
    when the cap was set.
    """
    import ctypes
    from pathlib import Path

    found: set[str] = set()
    try:
        with open("/proc/self/maps") as maps:
            found = {line.split()[-1] for line in maps if "libavutil" in line and "/" in line}
    except OSError:  # not Linux
        pass
    package = Path(av.__file__).resolve().parent
    for folder in (package.parent / "av.libs", package / ".dylibs"):  # auditwheel / delocate wheels
        if not found and folder.is_dir():
            found = {str(p) for p in folder.glob("*avutil*")}
    done = False
    for path in found:
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, so the same setting
            lib.av_max_alloc.argtypes, lib.av_max_alloc.restype = [ctypes.c_size_t], None
            lib.av_max_alloc(FFMPEG_MAX_ALLOC)
            done = True
        except (OSError, AttributeError):  # not loadable, or not libavutil after all
            continue
    return done


def open_options(head: bytes) -> dict[str, str]:
    """The demuxer options for ``av.open`` of an input starting with ``head`` (see _WAV_PACKET_BYTES)."""
    return {"max_size": str(_WAV_PACKET_BYTES)} if head.startswith(_RIFF_MAGIC) else {}


def reraise_oom(exc: Exception, av: Any) -> None:
    """Re-raise ``exc`` when it is this process running out of memory (never a "damaged file").

    ``av.error.MemoryError`` is also a ``MemoryError``, but it is FFmpeg's ENOMEM for a size a
    damaged header asks for (an MP4 sample table of 4 billion entries): the file's fault.
    """
    if isinstance(exc, MemoryError) and not isinstance(exc, av.error.FFmpegError):
        raise exc


def av_header_seconds(container: Any) -> float | None:
    """The duration PyAV reads from the container: audio stream first, then the whole container."""
    for stream in container.streams.audio:
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def frame_to_mono(frame: Any) -> np.ndarray:
    """Convert one av.AudioFrame (any sample format/layout) to float32 mono.

    The planes are read by index, one per channel (``AudioPlane(frame, i)``), not through
    ``frame.to_ndarray()``/``frame.planes``: PyAV (18.x) finds the planes by walking FFmpeg's
    plane-pointer array to a NULL, which reads past its end for 8 or more planar channels
    (a 7.1 AAC track, an Opus or Vorbis stream of 8+ channels) and crashed the process.
    """
    from av.audio.plane import AudioPlane

    dtype = _SAMPLE_DTYPES.get(frame.format.name.removesuffix("p"))
    if dtype is None:
        raise ValueError(f"unsupported sample format {frame.format.name}")
    channels = max(1, int(frame.layout.nb_channels))
    n = int(frame.samples)
    if frame.format.is_planar:
        planes = [np.frombuffer(AudioPlane(frame, i), dtype=dtype, count=n) for i in range(channels)]
        arr = np.stack(planes, axis=1) if channels > 1 else planes[0][:, None]
    else:  # packed: one plane of interleaved samples
        arr = np.frombuffer(AudioPlane(frame, 0), dtype=dtype, count=n * channels).reshape(n, channels)
    if arr.dtype.kind == "f":
        out = arr.astype(np.float32, copy=False)
    elif arr.dtype.kind == "u":  # u8: unsigned, centred at 128
        out = (arr.astype(np.float32) - 128.0) / 128.0
    else:  # s16/s32/s64
        out = arr.astype(np.float32) / float(2 ** (arr.dtype.itemsize * 8 - 1))
    return mix_down(out)


__all__ = [
    "FFMPEG_MAX_ALLOC",
    "av_header_seconds",
    "frame_to_mono",
    "limit_ffmpeg_allocations",
    "open_options",
    "reraise_oom",
]
