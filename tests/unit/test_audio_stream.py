"""Streaming decode: max_seconds (header and running count), warnings, file objects, chunked resampling.

Real files through the real decoders, made with numpy + soundfile, or ffmpeg where a codec is needed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from twi_asr.audio import SAMPLE_RATE, decode_audio, probe_duration
from twi_asr.audio_stream import SampleSink
from twi_asr.errors import AudioError, AudioTooLongError, UsageError

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")


def ffmpeg(*args: str | Path) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def tone(rate: int, channels: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def set_flac_total_samples(path: Path, total: int) -> None:
    """Rewrite the 36-bit total-samples field of a FLAC's STREAMINFO (0 means "unknown")."""
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"fLaC" and raw[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    field = int.from_bytes(raw[18:26], "big")
    field = (field & ~((1 << 36) - 1)) | total
    raw[18:26] = field.to_bytes(8, "big")
    path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------- max_seconds: the header


@needs_ffmpeg
def test_long_ogg_opus_is_refused_from_its_header(tmp_path: Path) -> None:
    """Two hours of silence in ~0.7 MB (a 60 s seed looped by remuxing): refused before decoding."""
    seed, bomb = tmp_path / "seed.opus", tmp_path / "bomb.opus"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "60", "-c:a", "libopus", "-b:a", "6k",
           "-frame_duration", "60", seed)  # fmt: skip
    ffmpeg("-stream_loop", "119", "-i", seed, "-c", "copy", bomb)
    start = time.perf_counter()
    with pytest.raises(AudioTooLongError) as info:
        decode_audio(bomb, max_seconds=600)
    assert time.perf_counter() - start < 0.5
    err = info.value
    assert err.code == "audio_too_long" and isinstance(err, AudioError)
    assert err.limit == 600 and err.seconds == pytest.approx(7200, abs=1)
    assert str(err) == f"{bomb}: the audio is 7200 s long; the limit is 600 s"
    with pytest.raises(AudioTooLongError, match=r"^upload\.opus: the audio is 7200 s long"):
        decode_audio(bomb.read_bytes(), name="upload.opus", max_seconds=600)


@needs_ffmpeg
def test_long_flac_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "1800", "-c:a", "flac", path)
    start = time.perf_counter()
    with pytest.raises(AudioTooLongError, match=r"the audio is 1800 s long; the limit is 12\.5 s") as info:
        decode_audio(path, max_seconds=12.5)
    assert time.perf_counter() - start < 0.5
    assert info.value.seconds == pytest.approx(1800)
    assert decode_audio(path, max_seconds=1800).duration == pytest.approx(1800, abs=0.01)  # at the limit


def test_within_the_limit_decodes_as_without_one(tmp_path: Path) -> None:
    path = tmp_path / "five.wav"
    sf.write(str(path), tone(44100, 2, 5.0), 44100, subtype="PCM_16")
    limited, free = decode_audio(path, max_seconds=5.01), decode_audio(path)
    np.testing.assert_array_equal(limited.samples, free.samples)
    with pytest.raises(AudioTooLongError, match=r"is 5 s long; the limit is 4\.9 s"):
        decode_audio(path, max_seconds=4.9)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_max_seconds_must_be_positive(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "one.wav"
    sf.write(str(path), tone(16000, 1, 1.0), 16000)
    with pytest.raises(UsageError, match="max_seconds"):
        decode_audio(path, max_seconds=bad)


# --------------------------------------------------------------------------- max_seconds: counting


@needs_ffmpeg
def test_raw_adts_has_no_duration_header_and_is_cut_off_while_decoding(tmp_path: Path) -> None:
    path = tmp_path / "long.aac"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=22050", "-t", "100", "-c:a", "aac", path)
    with pytest.raises(
        AudioTooLongError, match=r"long\.aac: the audio is at least 5\.\d s long; the limit is 5 s"
    ):
        decode_audio(path, max_seconds=5)
    full = decode_audio(path)  # no limit: 100 s, past the 60 s first guess of the buffer
    assert full.duration == pytest.approx(100, abs=0.2) and full.warnings == ()
    assert abs(peak_hz(full.samples[: 10 * SAMPLE_RATE]) - 440) < 2


def test_flac_without_a_length_is_counted(tmp_path: Path) -> None:
    """STREAMINFO total_samples = 0 ("unknown"): libsndfile gives up, PyAV decodes and counts."""
    path = tmp_path / "nolength.flac"
    sf.write(str(path), tone(44100, 2, 20.0), 44100, subtype="PCM_16")
    set_flac_total_samples(path, 0)
    assert probe_duration(path) is None
    with pytest.raises(AudioTooLongError, match="at least") as info:
        decode_audio(path, max_seconds=5)
    assert 5 < info.value.seconds < 7
    audio = decode_audio(path)
    assert audio.duration == pytest.approx(20, abs=0.01)


def test_a_header_that_understates_is_caught_by_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FLAC header says 1 s, the file holds 20 s, and PyAV reads past the header."""
    path = tmp_path / "liar.flac"
    sf.write(str(path), tone(44100, 1, 20.0), 44100, subtype="PCM_16")
    set_flac_total_samples(path, 44100)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # PyAV only
    assert probe_duration(path) == pytest.approx(1.0)
    with pytest.raises(AudioTooLongError, match=r"at least 5\.\d s long; the limit is 5 s"):
        decode_audio(path, max_seconds=5)


# --------------------------------------------------------------------------- warnings


def test_truncated_wav_says_so(tmp_path: Path) -> None:
    for seconds in (2.0, 10.0):  # one read, and streamed in blocks
        full = tmp_path / f"full{seconds}.wav"
        sf.write(str(full), tone(16000, 1, seconds), 16000, subtype="PCM_16")
        raw = full.read_bytes()
        cut = tmp_path / f"cut{seconds}.wav"
        cut.write_bytes(raw[: 44 + (len(raw) - 44) // 2])
        audio = decode_audio(cut)
        assert audio.duration == pytest.approx(seconds / 2, abs=0.01)
        half, whole = f"{seconds / 2:.1f}", f"{seconds:.1f}"
        assert audio.warnings == (
            f"the file ends early: decoded {half} s of the {whole} s its header promises",
        )
        assert decode_audio(full).warnings == ()


def test_truncated_flac_says_so(tmp_path: Path) -> None:
    full = tmp_path / "full.flac"
    noise = np.random.default_rng(1).uniform(-0.3, 0.3, (44100 * 10, 2)).astype(np.float32)
    sf.write(str(full), noise, 44100, subtype="PCM_16")
    raw = full.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(raw[: len(raw) // 2])
    audio = decode_audio(cut)
    assert 3 < audio.duration < 7
    assert len(audio.warnings) == 1 and audio.warnings[0].startswith("the file ends early: decoded ")


@needs_ffmpeg
def test_truncated_mp3_and_adts_say_so(tmp_path: Path) -> None:
    for ext in ("mp3", "aac"):
        full = tmp_path / f"full.{ext}"
        ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=22050", "-t", "8", full)
        assert decode_audio(full).warnings == ()
        raw = full.read_bytes()
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(raw[: len(raw) // 2 + 7])  # mid-frame
        audio = decode_audio(cut)
        assert 3 < audio.duration < 5
        assert len(audio.warnings) == 1, audio.warnings
        assert audio.warnings[0].startswith("the file ends early: decoded "), audio.warnings


# --------------------------------------------------------------------------- file objects and buffers


def test_file_objects_and_buffers(tmp_path: Path) -> None:
    path = tmp_path / "clip.flac"
    sf.write(str(path), tone(48000, 2, 6.0), 48000, subtype="PCM_24")
    expected = decode_audio(path).samples
    raw = path.read_bytes()

    with open(path, "rb") as fh:
        audio = decode_audio(fh)
        assert audio.name == str(path) and not fh.closed
    np.testing.assert_array_equal(audio.samples, expected)

    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spooled:  # what Starlette's UploadFile holds
        spooled.write(raw)
        spooled.seek(0)
        audio = decode_audio(spooled, name="upload.flac", max_seconds=60)
        assert audio.name == "upload.flac"
        np.testing.assert_array_equal(audio.samples, expected)
        spooled.seek(100)
        assert probe_duration(spooled) == pytest.approx(6.0)
        assert spooled.tell() == 100  # left where it was
        with pytest.raises(
            AudioTooLongError, match=r"^upload\.flac: the audio is 6 s long; the limit is 2 s"
        ):
            decode_audio(spooled, name="upload.flac", max_seconds=2)

    assert decode_audio(io.BytesIO(raw)).name == "<file>"
    for buffer in (bytearray(raw), memoryview(raw)):
        np.testing.assert_array_equal(decode_audio(buffer, name="b").samples, expected)
    with pytest.raises(AudioError, match=r"upload\.wav: empty file"):
        decode_audio(io.BytesIO(b""), name="upload.wav")


@needs_ffmpeg
def test_pyav_formats_from_file_objects(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=44100", "-t", "3", path)
    expected = decode_audio(path).samples
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(decode_audio(fh).samples, expected)
    np.testing.assert_array_equal(decode_audio(bytearray(path.read_bytes())).samples, expected)
    with open(path, "rb") as fh:
        assert probe_duration(fh) == pytest.approx(3.0, abs=0.05)


# --------------------------------------------------------------------------- streamed resampling


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streamed_resampling_matches_one_shot(rate: int) -> None:
    rng = np.random.default_rng(rate)
    signal = (0.3 * rng.standard_normal(rate * 7)).astype(np.float32)
    sink = SampleSink("x", None, expected_seconds=1.0)  # also grows past its first guess
    pos = 0
    while pos < signal.size:  # ragged blocks, like decoder frames
        step = int(rng.integers(100, rate // 2))
        sink.add(signal[pos : pos + step].copy(), rate)
        pos += step
    streamed = sink.finish()
    one_shot = soxr.resample(signal, rate, SAMPLE_RATE, quality="HQ")
    assert abs(streamed.size - one_shot.size) <= 1
    n = min(streamed.size, one_shot.size)
    edge = SAMPLE_RATE // 100  # 10 ms
    assert np.abs(streamed[edge : n - edge] - one_shot[edge : n - edge]).max() < 1e-3
    assert np.corrcoef(streamed[:n], one_shot[:n])[0, 1] > 0.9999


def test_a_change_of_rate_resamples_each_run() -> None:
    a, b = tone(8000, 1, 1.0)[:, 0], tone(48000, 1, 1.5, freq=1000)[:, 0]
    sink = SampleSink("x", None, None)
    sink.add(a, 8000)
    sink.add(b, 48000)
    out = sink.finish()
    expected = np.concatenate(
        [soxr.resample(a, 8000, SAMPLE_RATE, "HQ"), soxr.resample(b, 48000, SAMPLE_RATE, "HQ")]
    )
    assert out.size == expected.size
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_sink_limit_counts_16k_samples() -> None:
    sink = SampleSink("clip", 2.0, None)
    sink.add(np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)  # exactly the limit is fine
    with pytest.raises(
        AudioTooLongError, match=r"^clip: the audio is at least 2\.5 s long; the limit is 2 s"
    ):
        sink.add(np.zeros(SAMPLE_RATE // 2, np.float32), SAMPLE_RATE)  # gathered up to 1 s...
        sink.finish()  # ...or to the end


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streamed_wav_any_rate_and_channels(tmp_path: Path, rate: int, channels: int) -> None:
    """Longer than one 2 s block, so libsndfile streams; the result matches a one-shot decode."""
    data = tone(rate, channels, 5.3)
    path = tmp_path / f"t_{rate}_{channels}.wav"
    sf.write(str(path), data, rate, subtype="FLOAT")
    audio = decode_audio(path)
    assert audio.samples.dtype == np.float32 and audio.samples.flags.c_contiguous
    assert audio.duration == pytest.approx(5.3, abs=0.001) and audio.warnings == ()
    assert abs(peak_hz(audio.samples) - 440) <= 2.0
    reference = data[:, 0] if rate == SAMPLE_RATE else soxr.resample(data[:, 0], rate, SAMPLE_RATE, "HQ")
    np.testing.assert_allclose(audio.samples, reference, atol=1e-4)


def test_nan_in_a_later_block_is_caught(tmp_path: Path) -> None:
    data = tone(22050, 2, 6.0)
    data[22050 * 5, 1] = np.nan
    path = tmp_path / "late_nan.wav"
    sf.write(str(path), data, 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"late_nan\.wav.*NaN or infinite"):
        decode_audio(path)


@needs_ffmpeg
def test_a_remuxed_looped_ogg_decodes_to_its_whole_length(tmp_path: Path) -> None:
    # ffmpeg's -stream_loop remux leaves an Ogg page libsndfile calls malformed after the first
    # loop (it stopped at 5 s of 15); FFmpeg reads on, and the longer decode wins.
    seed, looped = tmp_path / "seed.opus", tmp_path / "looped.opus"
    t = np.arange(5 * 48000) / 48000
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000)
    ffmpeg("-i", tmp_path / "tone.wav", "-c:a", "libopus", seed)
    ffmpeg("-stream_loop", "2", "-i", seed, "-c", "copy", looped)
    audio = decode_audio(looped)
    assert audio.duration == pytest.approx(15.0, abs=0.1)
    assert not any("ends early" in w for w in audio.warnings), audio.warnings
    assert peak_hz(audio.samples[-SAMPLE_RATE:]) == pytest.approx(440, abs=10)


@needs_ffmpeg
def test_an_mp3_in_a_spooled_upload_file_decodes(tmp_path: Path) -> None:
    # Starlette spools uploads to SpooledTemporaryFile(mode="w+b"); PyAV reads a file object's
    # mode, and "w+b" made it look for an *output* format ("Could not determine output format").
    sf.write(tmp_path / "tone.wav", tone(44100, 1, 2.0)[:, 0], 44100)
    ffmpeg("-i", tmp_path / "tone.wav", tmp_path / "tone.mp3")
    upload = tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+b")  # noqa: SIM115
    upload.write((tmp_path / "tone.mp3").read_bytes())
    upload.seek(0)
    assert probe_duration(upload) == pytest.approx(2.0, abs=0.1)
    audio = decode_audio(upload, name="tone.mp3")
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    assert peak_hz(audio.samples) == pytest.approx(440, abs=10)
