"""decode_audio on real files: one espeak-ng clip converted by ffmpeg/sox to every format we claim.

Only the audio is checked here (duration, and a 20 ms RMS envelope that must
track the reference decode); word accuracy across formats needs a model and
is checked elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from twi_asr.audio import SAMPLE_RATE, Audio, decode_audio, probe_duration
from twi_asr.errors import AudioError

pytestmark = pytest.mark.slow

TEXT = "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore."
FRAME = SAMPLE_RATE // 50  # 20 ms
# Measured with ffmpeg 5.1: every format lines up at lag 0 with envelope correlation >= 0.985 and RMS
# within 5% (MP3) of the reference; the bounds below leave a margin, not room for a real shift.
MAX_LAG_FRAMES = 1  # encoder delay/priming must be removed by the decoder: at most 20 ms left
MIN_CORRELATION = 0.95

# Lossy codecs pad to whole frames: AAC keeps up to one 1024-sample frame of tail padding
# (46 ms at 22.05 kHz; 30 ms here). Everything else decodes within 7 ms of the reference.
DURATION_TOLERANCE = 0.05

# The only formats that need more (ffmpeg's own behaviour, the same with the ffmpeg CLI):
# (duration tolerance in s, max lag in 20 ms frames).
ALLOWANCE = {
    # Raw ADTS has no edit list, so the decoder cannot drop the encoder's 1024-sample priming:
    # the audio starts ~46 ms late and is ~77 ms long.
    "aac-adts": (0.1, 2),
    # ffmpeg's wmav2 encoder/decoder pair loses ~40 ms at the start.
    "wma": (DURATION_TOLERANCE, 2),
}

# ffmpeg's "-ac 2" upmixes mono at -3 dB, so stereo files are made with the pan filter.
ENCODED = {
    # name: (file name, ffmpeg output arguments)
    "flac": ("speech.flac", ["-c:a", "flac"]),
    "ogg-vorbis": ("speech.ogg", ["-c:a", "libvorbis"]),
    "opus": ("speech.opus", ["-c:a", "libopus"]),
    "webm-opus": ("speech.webm", ["-c:a", "libopus"]),
    "mp3": ("speech.mp3", ["-c:a", "libmp3lame"]),
    "m4a-aac": ("speech.m4a", ["-c:a", "aac"]),
    "aac-adts": ("speech.aac", ["-c:a", "aac"]),
    "3gp-aac-16k": ("speech.3gp", ["-c:a", "aac", "-ar", "16000"]),
    "wma": ("speech.wma", ["-c:a", "wmav2"]),
    "aiff": ("speech.aiff", ["-c:a", "pcm_s16be"]),
    "mkv-pcm-s16-stereo-48k": (
        "speech.mkv",
        ["-c:a", "pcm_s16le", "-af", "pan=stereo|c0=c0|c1=c0", "-ar", "48000"],
    ),
}
WAV_VARIANTS = [
    (rate, channels, encoding)
    for rate in (8000, 22050, 44100, 48000)
    for channels in (1, 2)
    for encoding in ("s16", "s24", "f32")
]


@dataclass(frozen=True)
class Media:
    folder: Path
    reference: Audio
    files: dict[str, Path]  # every decodable variant, by case name
    bad: dict[str, Path]  # inputs that must raise AudioError


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _ffmpeg(*args: str | Path) -> None:
    _run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)])


def _has_encoder(name: str) -> bool:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    return any(line.split()[1:2] == [name] for line in out.stdout.splitlines() if line.strip())


def _wav_variant(src: Path, dst: Path, rate: int, channels: int, encoding: str) -> None:
    if shutil.which("sox"):
        bits, kind = {"s16": ("16", "signed-integer"), "s24": ("24", "signed-integer")}.get(
            encoding, ("32", "floating-point")
        )
        _run(["sox", str(src), "-r", str(rate), "-c", str(channels), "-b", bits, "-e", kind, str(dst)])
    else:
        codec = {"s16": "pcm_s16le", "s24": "pcm_s24le", "f32": "pcm_f32le"}[encoding]
        layout = "pan=stereo|c0=c0|c1=c0" if channels == 2 else "anull"  # "-ac 2" would lower the level 3 dB
        _ffmpeg("-i", src, "-af", layout, "-ar", rate, "-c:a", codec, dst)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH; install it (apt-get install {tool}) to run the format tests")
    folder = tmp_path_factory.mktemp("formats")
    ref = folder / "reference.wav"
    _run(["espeak-ng", "-v", "en-us", "-w", str(ref), TEXT])
    reference = decode_audio(ref)

    files: dict[str, Path] = {}
    for case, (file_name, args) in ENCODED.items():
        _ffmpeg("-i", ref, *args, folder / file_name)
        files[case] = folder / file_name

    video_codec = "libx264" if _has_encoder("libx264") else "mpeg4"
    video = f"color=c=black:s=64x64:r=25:d={reference.duration + 0.5:.2f}"
    files[f"mp4-{video_codec}-aac"] = folder / "speech.mp4"
    _ffmpeg("-f", "lavfi", "-i", video, "-i", ref, "-map", "0:v", "-map", "1:a", "-shortest",
            "-c:v", video_codec, "-c:a", "aac", folder / "speech.mp4")  # fmt: skip

    for rate, channels, encoding in WAV_VARIANTS:
        dst = folder / f"speech_{rate}_{channels}ch_{encoding}.wav"
        _wav_variant(ref, dst, rate, channels, encoding)
        files[dst.stem] = dst

    bad: dict[str, Path] = {}
    bad["empty"] = folder / "empty.wav"
    bad["empty"].write_bytes(b"")
    bad["text"] = folder / "notes.wav"
    bad["text"].write_text("Meeting notes: this is text, not audio.\n" * 10)
    bad["header-only"] = folder / "header_only.wav"
    bad["header-only"].write_bytes(ref.read_bytes()[:44])
    bad["mp3-200-bytes"] = folder / "cut200.mp3"
    bad["mp3-200-bytes"].write_bytes(files["mp3"].read_bytes()[:200])
    bad["m4a-half"] = folder / "half.m4a"  # ffmpeg puts the index at the end: nothing left to decode
    raw = files["m4a-aac"].read_bytes()
    bad["m4a-half"].write_bytes(raw[: len(raw) // 2])
    bad["video-only"] = folder / "silent_film.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=1", "-c:v", video_codec, bad["video-only"])
    return Media(folder=folder, reference=reference, files=files, bad=bad)


def envelope(samples: np.ndarray) -> np.ndarray:
    frames = samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME)
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def best_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Highest Pearson correlation of two envelopes over small lags, and that lag in frames."""
    best = (-1.0, 0)
    for lag in range(-5, 6):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        corr = float(np.corrcoef(x[:n], y[:n])[0, 1])
        best = max(best, (corr, lag))
    return best


def assert_matches_reference(
    audio: Audio, reference: Audio, tolerance: float = DURATION_TOLERANCE, max_lag: int = MAX_LAG_FRAMES
) -> None:
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.isfinite(audio.samples).all()
    drift = audio.duration - reference.duration
    assert abs(drift) <= tolerance, f"{audio.name}: {audio.duration:.3f} s vs {reference.duration:.3f} s"
    corr, lag = best_correlation(envelope(audio.samples), envelope(reference.samples))
    assert corr > MIN_CORRELATION, f"{audio.name}: envelope correlation {corr:.3f}"
    assert abs(lag) <= max_lag, f"{audio.name}: shifted by {lag * 20} ms"
    level, ref_level = (float(np.sqrt(np.mean(x**2))) for x in (audio.samples, reference.samples))
    assert level == pytest.approx(ref_level, rel=0.1), f"{audio.name}: RMS {level:.4f} vs {ref_level:.4f}"


CASES = [*ENCODED, "mp4-video", *(f"speech_{r}_{c}ch_{e}" for r, c, e in WAV_VARIANTS)]


def _file(media: Media, case: str) -> Path:
    if case == "mp4-video":
        return next(path for name, path in media.files.items() if name.startswith("mp4-"))
    return media.files[case]


def test_reference_is_speech(media: Media) -> None:
    assert 2.0 < media.reference.duration < 15.0
    assert float(np.abs(media.reference.samples).max()) > 0.05


@pytest.mark.parametrize("case", CASES)
def test_format_decodes_like_reference(media: Media, case: str) -> None:
    path = _file(media, case)
    audio = decode_audio(path)
    assert audio.name == str(path)
    assert_matches_reference(audio, media.reference, *ALLOWANCE.get(case, ()))


@pytest.mark.parametrize("case", ["mp3", "m4a-aac", "webm-opus", "opus", "mp4-video", "flac"])
def test_bytes_decode_like_paths(media: Media, case: str) -> None:
    path = _file(media, case)
    from_bytes = decode_audio(path.read_bytes(), name=path.name)
    assert from_bytes.name == path.name
    np.testing.assert_allclose(from_bytes.samples, decode_audio(path).samples, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_probe_duration(media: Media, case: str) -> None:
    duration = probe_duration(_file(media, case))
    assert duration is not None
    # Raw ADTS has no duration in any header: FFmpeg estimates it from the bitrate (seen 6% off).
    tolerance = 0.1 * media.reference.duration if case == "aac-adts" else DURATION_TOLERANCE
    assert abs(duration - media.reference.duration) <= tolerance


BAD_MESSAGES = {
    "empty": "empty file",
    "text": "not audio",
    "header-only": "no audio samples",
    "mp3-200-bytes": "not audio, or too damaged",
    "m4a-half": "not audio, or too damaged",
    "video-only": "no audio stream",
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_files_raise_audio_error(media: Media, case: str) -> None:
    path = media.bad[case]
    with pytest.raises(AudioError) as info:
        decode_audio(path)
    message = str(info.value)
    assert path.name in message and BAD_MESSAGES[case] in message, message
    with pytest.raises(AudioError, match=path.name.replace(".", r"\.")):
        decode_audio(path.read_bytes(), name=path.name)


@pytest.mark.parametrize("case", ["mp3", "speech_44100_2ch_s16", "flac"])
def test_truncated_file_returns_decodable_prefix(media: Media, case: str, tmp_path: Path) -> None:
    raw = media.files[case].read_bytes()
    cut = tmp_path / f"half_{media.files[case].name}"
    cut.write_bytes(raw[: len(raw) // 2])
    audio = decode_audio(cut)
    assert 0.3 * media.reference.duration < audio.duration < 0.7 * media.reference.duration
    # the prefix is the start of the clip, not noise
    n = len(audio.samples)
    ref_env, env = envelope(media.reference.samples[:n]), envelope(audio.samples)
    corr, lag = best_correlation(env[: len(ref_env)], ref_env)
    assert corr > MIN_CORRELATION and abs(lag) <= MAX_LAG_FRAMES
