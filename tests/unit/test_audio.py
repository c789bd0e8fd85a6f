"""Fast tests of twi_asr.audio on synthetic signals written with soundfile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from twi_asr.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, Audio, decode_audio, probe_duration
from twi_asr.errors import AudioError, DependencyMissingError, InputError, InputNotFoundError

FREQ = 440.0
DURATION = 1.0


def sine(
    rate: int, channels: int, duration: float = DURATION, freq: float = FREQ, amp: float = 0.5
) -> np.ndarray:
    """A sine wave, (samples, channels), the same in every channel."""
    t = np.arange(int(round(rate * duration))) / rate
    wave = (amp * np.sin(2 * np.pi * FREQ * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    sf.write(str(path), data, rate, subtype=subtype, format=fmt)
    return path


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def assert_decoded_sine(audio: Audio, duration: float = DURATION, amp: float = 0.5) -> None:
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.samples.flags.c_contiguous
    assert abs(audio.duration - duration) <= 0.02
    assert abs(peak_hz(audio.samples) - FREQ) <= 2.0
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    assert rms == pytest.approx(amp / np.sqrt(2), rel=0.03)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_decode_wav_any_rate_depth_channels(tmp_path: Path, rate: int, channels: int, subtype: str) -> None:
    path = write(tmp_path / f"sine_{rate}_{channels}_{subtype}.wav", sine(rate, channels), rate, subtype)
    audio = decode_audio(path)
    assert audio.name == str(path)
    assert_decoded_sine(audio)


@pytest.mark.parametrize(("ext", "fmt", "subtype"), [("flac", "FLAC", "PCM_24"), ("ogg", "OGG", "VORBIS")])
def test_decode_flac_and_ogg(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    path = write(tmp_path / f"sine.{ext}", sine(44100, 2), 44100, subtype, fmt)
    assert_decoded_sine(decode_audio(path))


def test_16k_mono_pcm16_is_bit_exact(tmp_path: Path) -> None:
    data = sine(SAMPLE_RATE, 1)[:, 0]
    path = write(tmp_path / "exact.wav", data, SAMPLE_RATE, "PCM_16")
    expected, _ = sf.read(str(path), dtype="float32")
    np.testing.assert_array_equal(decode_audio(path).samples, expected)


def test_stereo_is_channel_mean(tmp_path: Path) -> None:
    left = sine(SAMPLE_RATE, 1)[:, 0]
    data = np.stack([left, np.zeros_like(left)], axis=1)  # right channel silent
    audio = decode_audio(write(tmp_path / "left.wav", data, SAMPLE_RATE, "FLOAT"))
    np.testing.assert_allclose(audio.samples, left / 2, atol=1e-6)

    opposite = np.stack([left, -left], axis=1)  # the channels cancel out
    audio = decode_audio(write(tmp_path / "opposite.wav", opposite, SAMPLE_RATE, "FLOAT"))
    assert np.abs(audio.samples).max() < 1e-6


def test_multichannel(tmp_path: Path) -> None:
    audio = decode_audio(write(tmp_path / "six.wav", sine(48000, 6), 48000, "PCM_16"))
    assert_decoded_sine(audio)


def test_bytes_input(tmp_path: Path) -> None:
    for name, fmt, subtype in [("b.wav", "WAV", "PCM_16"), ("b.flac", "FLAC", "PCM_16")]:
        path = write(tmp_path / name, sine(22050, 2), 22050, subtype, fmt)
        audio = decode_audio(path.read_bytes())
        assert audio.name == "<bytes>"
        assert_decoded_sine(audio)
        assert decode_audio(bytearray(path.read_bytes()), name="upload.wav").name == "upload.wav"


def test_pathlike_and_str(tmp_path: Path) -> None:
    path = write(tmp_path / "p.wav", sine(16000, 1), 16000)
    assert decode_audio(str(path)).name == str(path)
    assert decode_audio(path, name="clip-1").name == "clip-1"


def test_silence_is_zeros_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "silence.wav", np.zeros((44100, 2), np.float32), 44100, "PCM_16")
    audio = decode_audio(path)
    assert audio.duration == pytest.approx(1.0, abs=0.02)
    assert not audio.samples.any()


def test_single_sample_at_16k_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path / "one.wav", np.array([0.25], np.float32), SAMPLE_RATE, "FLOAT")
    assert decode_audio(path).samples.tolist() == [0.25]


def test_audio_dataclass() -> None:
    audio = Audio(samples=np.zeros(8000, np.float32), name="x")
    assert audio.duration == 0.5
    with pytest.raises(AttributeError):
        audio.name = "y"  # type: ignore[misc]
    assert audio == audio and audio != Audio(samples=audio.samples, name="x")  # identity, no array compare


def test_audio_extensions() -> None:
    assert {".wav", ".mp3", ".m4a", ".opus", ".webm", ".mp4", ".3gp"} <= AUDIO_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in AUDIO_EXTENSIONS)
    assert ".txt" not in AUDIO_EXTENSIONS


# --------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(InputNotFoundError, match="no such file") as info:
        decode_audio(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(InputError, match="directory") as info:
        decode_audio(folder)
    assert "folder.wav" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        decode_audio(path)


def test_empty_bytes() -> None:
    with pytest.raises(AudioError, match=r"upload\.mp3.*empty"):
        decode_audio(b"", name="upload.mp3")


def test_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav.*not audio"):
        decode_audio(path)


def test_random_bytes() -> None:
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(AudioError, match="junk"):
        decode_audio(b"RIFF" + noise, name="junk")


def test_header_only_wav(tmp_path: Path) -> None:
    path = write(tmp_path / "header.wav", np.zeros((0, 1), np.float32), 16000)
    assert path.stat().st_size == 44
    with pytest.raises(AudioError, match=r"header\.wav.*no audio samples"):
        decode_audio(path)


def test_truncated_wav_returns_the_decodable_part(tmp_path: Path) -> None:
    full = write(tmp_path / "full.wav", sine(16000, 1, duration=2.0), 16000)
    cut = tmp_path / "cut.wav"
    raw = full.read_bytes()
    cut.write_bytes(raw[: 44 + (len(raw) - 44) // 2])
    assert decode_audio(cut).duration == pytest.approx(1.0, abs=0.01)


def test_nan_and_inf_samples(tmp_path: Path) -> None:
    for bad in (np.nan, np.inf):
        data = sine(16000, 1)
        data[100, 0] = bad
        path = write(tmp_path / f"bad_{bad}.wav", data, 16000, "FLOAT")
        with pytest.raises(AudioError, match=r"bad_.*NaN or infinite"):
            decode_audio(path)


def test_pyav_path_handles_every_pcm_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With soundfile unavailable, PyAV decodes WAVs: exercises its sample-format conversions."""
    paths = [
        write(tmp_path / f"{subtype}_{channels}.wav", sine(22050, channels), 22050, subtype)
        for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
        for channels in (1, 2)
    ]
    monkeypatch.setitem(sys.modules, "soundfile", None)  # "import soundfile" now raises ImportError
    for path in paths:
        audio = decode_audio(path)
        assert audio.name == str(path)
        assert_decoded_sine(audio)


def test_without_pyav_soundfile_formats_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "ok.flac", sine(44100, 1), 44100, "PCM_16", "FLAC")
    notes = tmp_path / "notes.m4a"
    notes.write_text("not audio, and only PyAV could tell")
    monkeypatch.setitem(sys.modules, "av", None)
    assert_decoded_sine(decode_audio(path))
    with pytest.raises(DependencyMissingError, match=r"notes\.m4a.*pip install av"):
        decode_audio(notes)


def test_soundfile_errors_are_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "boom.wav", sine(16000, 1), 16000)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated libsndfile crash")

    monkeypatch.setattr(sf, "read", boom)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(DependencyMissingError, match="simulated libsndfile crash"):
        decode_audio(path)
    monkeypatch.delitem(sys.modules, "av")
    assert_decoded_sine(decode_audio(path))  # PyAV takes over


# --------------------------------------------------------------------------- probe_duration


def test_probe_duration(tmp_path: Path) -> None:
    path = write(tmp_path / "two.flac", sine(48000, 2, duration=2.0), 48000, "PCM_16", "FLAC")
    assert probe_duration(path) == pytest.approx(2.0, abs=0.001)
    assert probe_duration(tmp_path / "missing.wav") is None
    assert probe_duration(tmp_path) is None
    text = tmp_path / "text.wav"
    text.write_text("hello")
    assert probe_duration(text) is None


def test_import_is_cheap() -> None:
    code = (
        "import sys, twi_asr; before = set(sys.modules); import twi_asr.audio; "
        "print(sorted({'av', 'soundfile', 'soxr'} & (set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
