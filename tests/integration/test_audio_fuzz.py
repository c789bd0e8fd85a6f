"""decode_audio on damaged real files: every outcome is an Audio or an AudioError, quickly, in bounded memory.

The seeds are one espeak-ng sentence encoded by ffmpeg as WAV, FLAC, MP3, Ogg
Vorbis, Ogg Opus and M4A. Each input is decoded in a watched child process
(``fuzz_worker.DecodeWorker``): a hang becomes a "timeout" and a segfault a
"crash" instead of stopping pytest, and each case's peak RSS is its own. The
hypothesis run is derandomized (the same examples every run) and bounded;
systematic sweeps cover every parsed header field at extreme values, splices
between every pair of formats and cuts at the header's edges. The regression
tests at the end are the bugs the fuzzer found (``bench/fuzz_audio.py`` runs
it for longer):

* 8 or more planar channels (a 7.1 AAC track, 8-channel Opus, 12-channel
  Vorbis) crashed the process inside PyAV's ``frame.to_ndarray()``;
* a header claiming a 1 Hz sample rate made a 0.5 MB WAV resample into
  8.7 GB (minutes, then MemoryError);
* an MP4 sample table claiming 4 billion entries raised FFmpeg's ENOMEM as a
  bare ``MemoryError``, not an AudioError;
* a 120-byte WAV whose LIST chunk claims 2 GB made FFmpeg zero-fill 2 GB
  (``decode_audio`` and ``probe_duration``): two such uploads and a 4 GiB
  container is killed;
* a WAV whose codec FFmpeg has no decoder for was cut into 136,000 packets
  that each failed, one by one (3-10 s for 0.5 MB).
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twi_asr.audio import probe_duration
from twi_asr.audio_av import FFMPEG_MAX_ALLOC, limit_ffmpeg_allocations

from .fuzz_media import FORMATS, KINDS, Op, fields, make_seeds, mutate, set_field, with_field
from .fuzz_worker import GOOD, INPUT_KINDS, DecodeWorker, Outcome

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"),
]

TIMEOUT_S = 10.0
# Peak RSS growth per case. A 3 s clip decodes in under 5 MiB, but FFmpeg may still make one
# allocation a header sized, up to its cap (256 MiB, twi_asr.audio_av); the cases that used to
# reach gigabytes are checked against tighter bounds below.
MEMORY_BOUND = FFMPEG_MAX_ALLOC + 64 * 2**20
EXAMPLES_PER_FORMAT = 150
SEED_SECONDS = 3.09  # the espeak sentence


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH; install it (apt-get install {tool}) to fuzz decode_audio")
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def worker() -> Iterator[DecodeWorker]:
    with DecodeWorker(timeout_s=TIMEOUT_S) as w:
        yield w


def check(
    worker: DecodeWorker, data: bytes, kind: str = "bytes", max_seconds: float | None = None
) -> Outcome:
    """Decode ``data`` in the worker and assert the contract; returns the outcome."""
    outcome = worker.run(data, kind, max_seconds)
    what = f"{len(data)} bytes starting {data[:16]!r} as {kind}"
    assert outcome.kind in GOOD, f"{what}: {outcome.kind}: {outcome.detail}"
    assert outcome.peak_growth < MEMORY_BOUND, f"{what}: peak grew {outcome.peak_growth / 2**20:.0f} MiB"
    return outcome


def test_seeds_decode(seeds: dict[str, bytes], worker: DecodeWorker) -> None:
    assert set(seeds) == set(FORMATS)
    for fmt, data in seeds.items():
        outcome = check(worker, data)
        assert outcome.kind == "audio" and outcome.seconds == pytest.approx(SEED_SECONDS, abs=0.05), fmt
        assert fields(data), f"no header fields parsed in the {fmt} seed"


# --------------------------------------------------------------------------- hypothesis

u32 = st.integers(0, 2**32 - 1)
operation = st.tuples(st.sampled_from([k for k in KINDS if k != "oggcrc"]), u32, u32, u32)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=EXAMPLES_PER_FORMAT,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    ops=st.lists(operation, min_size=1, max_size=4),
    fix_crc=st.booleans(),
    kind=st.sampled_from(INPUT_KINDS),
    limited=st.booleans(),
)
def test_mutated_input_is_audio_or_audio_error(
    seeds: dict[str, bytes], worker: DecodeWorker, fmt: str, ops: list[Op], fix_crc: bool, kind: str,
    limited: bool,
) -> None:  # fmt: skip
    if fix_crc:
        ops = [*ops, ("oggcrc", 0, 0, 0)]
    check(worker, mutate(seeds[fmt], ops, seeds), kind, 30.0 if limited else None)


# --------------------------------------------------------------------------- systematic sweeps


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_header_field_at_extreme_values(
    seeds: dict[str, bytes], worker: DecodeWorker, fmt: str
) -> None:
    data = seeds[fmt]
    for field in fields(data):
        top = (1 << field.bits) - 1
        for value in sorted({0, 1, top, (top >> 1) + 1}):
            check(worker, set_field(data, field, value))


def test_splices_between_formats(seeds: dict[str, bytes], worker: DecodeWorker) -> None:
    for head_fmt, head in seeds.items():
        for tail_fmt, tail in seeds.items():
            if head_fmt == tail_fmt:
                continue
            check(worker, head[:4096] + tail[len(tail) // 3 :])  # one format's header, another's body
            check(worker, head[: len(head) // 2] + tail[: len(tail) // 2])  # a file, then another file


def test_cuts_and_zero_length(seeds: dict[str, bytes], worker: DecodeWorker) -> None:
    for data in seeds.values():
        n = len(data)
        for keep in (0, 1, 3, 4, 8, 12, 27, 44, 45, 64, 100, 512, 4096, n // 4, n // 2, n - 1):
            outcome = check(worker, data[:keep])
            if keep == 0:
                assert outcome.kind == "audio_error" and "empty input" in outcome.detail


# --------------------------------------------------------------------------- regressions


def _sine_media(path: Path, channels: int, codec: str) -> bytes:
    """2 s of the same 440 Hz sine (amplitude 1/8) in every one of ``channels`` channels."""
    split = "".join(f"[a{i}]" for i in range(channels))
    graph = f"asplit={channels}{split};{split}amerge=inputs={channels}"
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", "sine=f=440:d=2", "-filter_complex", graph, "-c:a", codec, str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("file_name", "channels", "codec"),
    [
        ("7.1.m4a", 8, "aac"),
        ("8ch.webm", 8, "libopus"),
        ("12ch.mka", 12, "libvorbis"),
        ("7.1.mkv", 8, "flac"),
    ],
)
def test_eight_or_more_planar_channels_decode(
    seeds: dict[str, bytes], worker: DecodeWorker, tmp_path: Path, file_name: str, channels: int, codec: str
) -> None:
    """PyAV's to_ndarray read past FFmpeg's plane pointers for 8+ planar channels: a segfault."""
    outcome = check(worker, _sine_media(tmp_path / file_name, channels, codec))
    assert outcome.kind == "audio", outcome.detail
    assert outcome.seconds == pytest.approx(2.0, abs=0.05)
    # every channel carries the sine, so their average is the sine: RMS 0.125 / sqrt(2)
    assert outcome.level == pytest.approx(0.0884, rel=0.15)


def _wav(rate: int, channels: int = 1, frames: int = 8000) -> bytes:
    """A 16-bit PCM WAV of silence with any (even absurd) rate in its header."""
    data = bytes(2 * channels * frames)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2 % 2**32, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


@pytest.mark.parametrize("rate", [1, 100, 3999, 1_048_576, 2**32 - 1])
def test_implausible_sample_rate_is_refused_at_once(worker: DecodeWorker, rate: int) -> None:
    """A 1 Hz header turned each sample into 16,000: a 0.5 MB WAV took minutes and 8.7 GB."""
    outcome = check(worker, _wav(rate, frames=136_000))
    assert outcome.kind == "audio_error" and outcome.elapsed < 1.0
    if rate < 2**32 - 1:  # libsndfile refuses that one itself ("SF_INFO struct incomplete")
        assert f"sample rate {rate} Hz is outside" in outcome.detail


@pytest.mark.parametrize("rate", [4000, 1_048_575])
def test_sample_rates_at_the_bounds_decode(worker: DecodeWorker, rate: int) -> None:
    outcome = check(worker, _wav(rate, frames=rate // 2))
    assert outcome.kind == "audio" and outcome.seconds == pytest.approx(0.5, abs=0.01)


def test_low_rate_in_a_vorbis_header_is_refused(seeds: dict[str, bytes], worker: DecodeWorker) -> None:
    outcome = check(worker, with_field(seeds["ogg"], "vorbis rate", 1))
    assert outcome.kind == "audio_error" and "sample rate 1 Hz" in outcome.detail


def test_ffmpeg_enomem_is_an_audio_error(seeds: dict[str, bytes], worker: DecodeWorker) -> None:
    """An MP4 'stts' table claiming 4 billion entries: FFmpeg says ENOMEM, PyAV raised a MemoryError."""
    outcome = check(worker, with_field(seeds["m4a"], "stts+4", 2**32 - 2))
    assert outcome.kind == "audio_error" and "more memory than FFmpeg allows" in outcome.detail


@pytest.mark.parametrize(
    ("fmt", "field", "value", "nth"),
    [
        ("wav", "data size", 2**32 - 1, 0),  # 4 GiB of samples promised
        ("wav", "riff size", 2**32 - 1, 0),
        ("flac", "total samples", 2**36 - 1, 0),  # 36 days at 22.05 kHz
        ("ogg", "granule", 2**63 - 1, -1),  # the last page's position: the length libsndfile reads
        ("opus", "granule", 2**63 - 1, -1),
        ("mp3", "xing frames", 2**32 - 1, 0),
        ("m4a", "mdhd+16", 2**32 - 1, 0),  # the track's duration
        ("m4a", "mvhd+16", 2**32 - 1, 0),
    ],
)
def test_huge_declared_length_costs_nothing(
    seeds: dict[str, bytes], worker: DecodeWorker, fmt: str, field: str, value: int, nth: int
) -> None:
    data = with_field(seeds[fmt], field, value, nth)
    outcome = check(worker, data)
    assert outcome.kind == "audio" and outcome.seconds == pytest.approx(SEED_SECONDS, abs=0.15)
    assert outcome.elapsed < 2.0 and outcome.peak_growth < 32 * 2**20
    check(worker, data, "file", max_seconds=3600)  # refused from the header, or decoded: never held


def _peak_growth(call) -> int:  # type: ignore[no-untyped-def]
    """Bytes the peak RSS of this process grew by during ``call()`` (Linux: VmHWM reset first)."""

    def peak() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = peak()
    call()
    return peak() - base


def test_a_120_byte_wav_cannot_make_ffmpeg_allocate_2_gb(worker: DecodeWorker) -> None:
    """FFmpeg allocates (and zeroes) a RIFF INFO tag's declared size before reading it."""
    wav_fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    info = b"INFO" + b"ISFT" + struct.pack("<I", 0x7FFF0000) + b"x" * 64  # a 2 GB software name
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + wav_fmt + b"LIST" + struct.pack("<I", 2**32 - 1) + info
    data = b"RIFF" + struct.pack("<I", 2**32 - 1) + body
    assert len(data) == 120
    outcome = check(worker, data)
    assert outcome.kind == "audio_error" and outcome.peak_growth < 32 * 2**20 and outcome.elapsed < 1.0
    import av

    assert limit_ffmpeg_allocations(av)  # the cap is set (Linux wheels: found in /proc/self/maps)
    growth = _peak_growth(lambda: probe_duration(io.BytesIO(data)))
    assert growth < 32 * 2**20


def test_a_codec_without_decoder_fails_at_once(worker: DecodeWorker) -> None:
    """32767-bit PCM at 1 byte/s: FFmpeg cut it into 4-byte packets (its byte rate sizes them), read
    them all in av.open looking for a decoder it does not have, then each failed in turn."""
    data = bytearray(_wav(44100, channels=2, frames=1_000_000))  # 4 MB: ~10 s before the fix
    data[28:36] = struct.pack("<IHH", 1, 4, 0x7FFF)  # byte rate 1, block align 4, 32767 bits
    outcome = check(worker, bytes(data))
    assert outcome.kind == "audio_error" and outcome.elapsed < 1.0
    start = time.perf_counter()
    assert probe_duration(io.BytesIO(bytes(data))) == 4_000_000  # 4 MB at 1 byte/s: what the header says
    assert time.perf_counter() - start < 1.0


def test_pyav_sees_the_missing_decoder_before_any_packet() -> None:
    """The same WAV through PyAV alone: no decoder, so no packet is read."""
    from twi_asr.audio_decode import DecodeFailed, Source, _decode_av

    data = bytearray(_wav(44100, channels=2, frames=136_000))
    data[28:36] = struct.pack("<IHH", 1, 4, 0x7FFF)
    with pytest.raises(DecodeFailed, match="FFmpeg has no decoder for its audio codec"):
        _decode_av(Source(label="x.wav", head=bytes(data[:12]), fh=io.BytesIO(bytes(data))), None)


def test_a_stream_of_failing_packets_is_not_read_to_the_end(tmp_path: Path) -> None:
    """5 s of AAC, then 60 s of ADTS frames with random payloads: decoding stops 1,000 failures in."""
    import random

    from twi_asr.audio import decode_audio

    path = tmp_path / "long.aac"
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", "sine=f=440:d=65:sample_rate=22050", "-c:a", "aac", "-b:a", "32k", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    data, pos, frame, rng = bytearray(path.read_bytes()), 0, 0, random.Random(1)
    while pos + 7 <= len(data):  # ADTS: a 7-byte header whose 13-bit length includes itself
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if frame >= 5 * 22050 // 1024:
            data[pos + 7 : pos + length] = rng.randbytes(length - 7)
        pos, frame = pos + length, frame + 1
    audio = decode_audio(bytes(data))
    assert audio.duration == pytest.approx(5.0, abs=0.1)
    assert audio.warnings == (
        "the file ends early: decoded 5.0 s (then 1000 packets in a row failed: "
        "Invalid data found when processing input)",
    )


def test_the_sink_refuses_a_rate_no_decoder_should_hand_it() -> None:
    """The last line of defence: whatever a decoder says, 1 Hz never reaches the resampler."""
    import numpy as np

    from twi_asr.audio_stream import SampleSink
    from twi_asr.errors import AudioError

    with pytest.raises(AudioError, match=r"^clip\.wav: sample rate 1 Hz is outside 4000-1048575 Hz"):
        SampleSink("clip.wav", None, None).add(np.zeros(100, dtype=np.float32), 1)
