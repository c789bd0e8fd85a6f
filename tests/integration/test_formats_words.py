"""The same speech in every container, codec, rate, channel count and bit depth gives the same words.

The audio itself is compared in test_audio_formats.py; here the real tiny.en
model (CTranslate2, int8) must hear the same words in every variant.

Every variant is made from one *telephone-band master* (the espeak-ng clip
resampled to 8 kHz), so that the 8 kHz files carry the same information as
the 48 kHz ones. Made from a wideband master instead, the 8 kHz copies lose
everything above 4 kHz and tiny.en mishears them (WER 0.4-0.5 against 0.0):
that is the model's narrowband weakness, not the decoder's, and it would hide
what this test checks. Wideband accuracy is checked in test_engines_real.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from twi_asr import TranscribeOptions, decode_audio
from twi_asr.text import wer

from .conftest import ENCODED, WAV_VARIANTS, _ffmpeg, _wav_variant

pytestmark = pytest.mark.slow

MAX_WER = 0.35
# A sentence tiny.en hears the same way in telephone band on every rerun; phrases such as
# "every Saturday" sit on a knife edge there ("every matter day") and flip with dither noise.
TEXT = "Our team finished the project two weeks early. The children walked to school along the river."


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("words")
    wide = folder / "wide.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wide), TEXT], check=True, timeout=60)
    master = folder / "master_8k.wav"
    _ffmpeg("-i", wide, "-ar", "8000", "-c:a", "pcm_s16le", master)
    files: dict[str, Path] = {}
    for case, (name, args) in ENCODED.items():
        rate = "48000" if "48k" in case or "opus" in case else "44100"  # opus only does 48 kHz
        _ffmpeg("-i", master, "-ar", rate, *args, folder / name)
        files[case] = folder / name
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=8", "-i", master, "-map", "0:v", "-map", "1:a",
            "-shortest", "-c:v", "mpeg4", "-c:a", "aac", "-ar", "44100", folder / "video.mp4")  # fmt: skip
    files["mp4-video"] = folder / "video.mp4"
    for rate, channels, encoding in WAV_VARIANTS:
        dst = folder / f"speech_{rate}_{channels}ch_{encoding}.wav"
        _wav_variant(master, dst, rate, channels, encoding)
        files[dst.stem] = dst
    return master, files


def test_every_format_gives_the_same_words(variants: tuple[Path, dict[str, Path]], ct2_engine) -> None:  # type: ignore[no-untyped-def]
    master, files = variants
    names = sorted(files)
    options = TranscribeOptions(beam_size=5)
    [reference] = ct2_engine.transcribe([decode_audio(master).samples], options)
    results = ct2_engine.transcribe([decode_audio(files[n]).samples for n in names], options)
    report = {n: (wer(reference.text, r.text), r.text) for n, r in zip(names, results, strict=True)}
    for name, (score, text) in report.items():
        print(f"{name:24s} WER vs master {score:.3f}: {text}")
    print(f"master vs known text: WER {wer(TEXT, reference.text):.3f}: {reference.text}")
    assert len(report) >= 35  # 11 codecs/containers + mp4 with video + 24 wav variants
    same = [n for n, (score, _) in report.items() if score == 0.0]
    # A broken decode (wrong rate, channel mix, sample format) scores 0.5 and more; lossy codecs
    # may flip a word at most.
    assert all(score <= 0.1 for score, _ in report.values()), report
    assert len(same) >= 0.8 * len(report), f"only {len(same)}/{len(report)} identical to the master"
    assert all(wer(TEXT, text) < MAX_WER for _, text in report.values()), report
