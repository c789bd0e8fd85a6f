"""decode_audio on real files: one espeak-ng clip converted by ffmpeg/sox to every format we claim.

Only the audio is checked here (duration, and a 20 ms RMS envelope that must
track the reference decode); word accuracy across formats needs a model and
is checked elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twi_asr.audio import SAMPLE_RATE, Audio, decode_audio, probe_duration
from twi_asr.errors import AudioError

from .conftest import ENCODED, WAV_VARIANTS, Media

pytestmark = pytest.mark.slow

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
    # Raw ADTS has no duration header: it is counted from frame headers and keeps the encoder's
    # priming frame (see ALLOWANCE), so it gets the same allowance as its decode.
    tolerance = ALLOWANCE.get(case, (DURATION_TOLERANCE,))[0]
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
