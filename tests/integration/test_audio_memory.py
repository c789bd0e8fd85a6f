"""decode_audio's memory on long inputs, measured in a fresh process (VmHWM from /proc/self/status).

* A 10-hour Ogg/Opus file of silence (~13 MB, the upload that once grew the
  server from 189 MB to 4.7 GB) must be refused from its header at once.
* A 3-hour 48 kHz stereo file must decode with a peak no higher than 1.5x
  its 16 kHz float32 result (3 h -> 691 MB of samples): no native-rate copy,
  no concatenation at the end.

The media are made once with ffmpeg and kept under pytest's temp root, so a
rerun does not pay for them again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .media import ffmpeg, silence_opus

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH"),
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM"),
]

MB = 1_000_000
SAMPLE_BYTES_PER_SECOND = 16000 * 4  # float32 mono 16 kHz

# Runs in a fresh interpreter: the decoders are imported first, so the baseline includes them.
PROBE = r"""
import json, sys, time
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))
path, kind, limit = sys.argv[1], sys.argv[2], (float(sys.argv[3]) if sys.argv[3] != "none" else None)
if kind == "pyav":  # PyAV only: "import soundfile" raises ImportError
    sys.modules["soundfile"] = None
else:
    import soundfile  # noqa: F401
import av, numpy, soxr  # noqa: F401
from twi_asr.audio import decode_audio
from twi_asr.errors import AudioTooLongError
source = open(path, "rb").read() if kind == "bytes" else open(path, "rb") if kind == "file" else path
base = hwm()
start = time.perf_counter()
result = {}
try:
    audio = decode_audio(source, max_seconds=limit)
    result.update(seconds=audio.duration, nbytes=audio.samples.nbytes, warnings=list(audio.warnings))
except AudioTooLongError as exc:
    result.update(error=str(exc), error_seconds=exc.seconds)
result.update(elapsed=time.perf_counter() - start, growth=hwm() - base, base=base)
print(json.dumps(result))
"""


def measure(path: Path, kind: str = "path", limit: float | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), kind, "none" if limit is None else str(limit)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{path.name} ({kind}, limit {limit}): {result}")  # shown with -s: the numbers for notes
    return result


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder beside pytest's numbered temp folders: it outlives a run (the files are big to make)."""
    folder = tmp_path_factory.getbasetemp().parent / "twi-asr-audio-memory"
    folder.mkdir(exist_ok=True)
    return folder


def _make(path: Path, build) -> Path:  # type: ignore[no-untyped-def]
    if not path.exists():
        partial = path.with_name(f"partial-{os.getpid()}-{path.name}")
        build(partial)
        partial.replace(path)  # atomic: a concurrent run sees the whole file or none
    return path


@pytest.fixture(scope="module")
def ten_hour_opus(cache: Path) -> Path:
    """10 h of mono silence in Ogg/Opus at 6 kb/s, ~13 MB: a 10-minute encode looped by remuxing
    (about 6 s; encoding the 10 hours directly takes minutes)."""
    return _make(cache / "ten_hours_silence.opus", lambda out: silence_opus(out, 36000))


@pytest.fixture(scope="module")
def three_hour_flac(cache: Path) -> Path:
    """3 h of 48 kHz stereo silence in FLAC: ~2 MB on disk, about 14 s to make."""

    def build(out: Path) -> None:
        ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "10800", "-c:a", "flac", out)

    return _make(cache / "three_hours_48k_stereo.flac", build)


@pytest.mark.parametrize("kind", ["path", "bytes", "file", "pyav"])
def test_ten_hour_opus_bomb_is_refused_at_once(ten_hour_opus: Path, kind: str) -> None:
    size = ten_hour_opus.stat().st_size
    assert 8 * MB < size < 16 * MB, size
    result = measure(ten_hour_opus, kind, limit=10800)
    assert "error" in result, result
    assert result["error"].endswith("the audio is 36000 s long; the limit is 10800 s")
    assert result["error_seconds"] == pytest.approx(36000, abs=1)
    assert result["elapsed"] < 2.0
    assert result["growth"] < 100 * MB  # the bytes case holds the 13 MB upload itself


def test_three_hour_48k_stereo_decodes_within_1_5x_of_its_samples(three_hour_flac: Path) -> None:
    result = measure(three_hour_flac)
    assert result["seconds"] == pytest.approx(10800, abs=0.01)
    assert result["warnings"] == []
    samples = 10800 * SAMPLE_BYTES_PER_SECOND  # 691.2 MB
    assert result["nbytes"] == pytest.approx(samples, rel=1e-5)
    assert result["growth"] <= 1.5 * samples, f"peak grew {result['growth'] / MB:.0f} MB"


def test_three_hour_file_past_the_limit_stops_early(three_hour_flac: Path) -> None:
    result = measure(three_hour_flac, "file", limit=3600)
    assert result["error"].endswith("the audio is 10800 s long; the limit is 3600 s")
    assert result["elapsed"] < 2.0 and result["growth"] < 100 * MB
