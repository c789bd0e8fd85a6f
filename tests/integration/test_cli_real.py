"""The ``twi-asr`` command as a user runs it: a real process, real weights, real files.

Checks exit codes (0 ok, 1 some inputs failed, 2 usage, 3 environment), that
outputs of good inputs are written even when others fail, that no traceback
reaches the user, and that hub ids resolve from a pre-filled cache offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from twi_asr.text import wer

from .conftest import Clip

pytestmark = pytest.mark.slow

MAX_WER = 0.35


def twi_asr(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TWI_ASR_NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "twi_asr", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )  # fmt: skip


def test_single_file_text_to_stdout(speech_clips: list[Clip]) -> None:
    clip = speech_clips[0]
    proc = twi_asr("transcribe", clip.path, "--model", "tiny.en")
    assert proc.returncode == 0, proc.stderr
    assert wer(clip.text, proc.stdout) < MAX_WER, proc.stdout
    assert proc.stdout.count("\n") == 1  # only the transcript on stdout; the summary goes to stderr
    assert "real-time factor" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def mixed_folder(speech_clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "sub").mkdir()
    for i, clip in enumerate(speech_clips[:4]):
        shutil.copy(clip.path, folder / ("sub" if i % 2 else ".") / clip.path.name)
    (folder / "broken.wav").write_text("this is a text file pretending to be audio\n" * 20)
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "notes.txt").write_text("not media: skipped and counted, never failed")
    return folder


@pytest.mark.parametrize("engine", ["ctranslate2", "transformers"])
def test_folder_with_bad_files_writes_the_rest(
    engine: str, mixed_folder: Path, speech_clips: list[Clip], tiny_en_hf: Path, tmp_path: Path
) -> None:
    model = "tiny.en" if engine == "ctranslate2" else str(tiny_en_hf)
    out = tmp_path / "out"
    proc = twi_asr("transcribe", mixed_folder, "-o", out, "-f", "all", "--model", model, "--engine", engine)
    assert proc.returncode == 1, proc.stderr  # some inputs failed, the rest written
    assert "broken.wav" in proc.stderr and "empty.mp3" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "notes" not in {p.stem for p in out.rglob("*")}  # skipped, not transcribed
    texts = {c.path.name: c.text for c in speech_clips[:4]}
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert written == sorted(
        (f"sub/{n}" if i % 2 else n).replace(".wav", ".json") for i, n in enumerate(sorted(texts))
    )
    refs, hyps = [], []
    for js in out.rglob("*.json"):
        doc = json.loads(js.read_text(encoding="utf-8"))
        assert doc["engine"] == engine and doc["language"] == "en" and doc["duration"] > 1.0
        refs.append(texts[js.stem + ".wav"])
        hyps.append(doc["text"])
        assert doc["timings"]["inference"] > 0
        for fmt in ("txt", "srt", "vtt", "tsv"):
            assert js.with_suffix(f".{fmt}").is_file()
        srt = js.with_suffix(".srt").read_text(encoding="utf-8")
        assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", srt), srt
        assert js.with_suffix(".vtt").read_text(encoding="utf-8").startswith("WEBVTT")
    assert not list(out.rglob("*.tmp")) and not [p for p in out.rglob(".*") if p.is_file()]
    assert wer(refs, hyps) < MAX_WER, list(zip(refs, hyps, strict=True))


def test_usage_errors_exit_2(speech_clips: list[Clip], tmp_path: Path) -> None:
    clip = speech_clips[0].path
    for args in (
        ["transcribe", clip, "-f", "srt,vtt"],  # several formats need -o
        ["transcribe", clip, "-f", "docx", "-o", tmp_path],
        ["transcribe", clip, "--engine", "whisper.cpp"],
        ["transcribe", clip, "--language", "klingon"],
        ["transcribe", clip, "--beam-size", "0"],
        ["transcribe", clip, "--model", "tiny.en", "--engine", "transformers"],  # a ct2 folder
        ["transcribe"],
        ["no-such-command"],
    ):
        proc = twi_asr(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_unreachable_hub_model_is_exit_3_and_names_the_way_out(
    speech_clips: list[Clip], tmp_path: Path
) -> None:
    proc = twi_asr(
        "transcribe", speech_clips[0].path, "--model", "someone/whisper-twi-that-is-not-cached",
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "--model tiny.en" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the default model (a hub fine-tune) offline: the same clear message, never a hang
    proc = twi_asr(
        "transcribe", speech_clips[0].path, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 3 and "tiny.en" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("missing.wav", None, "no such file"),
        ("empty.wav", b"", "empty"),
        ("text.wav", b"hello, I am text\n" * 50, "not audio"),
        ("header.wav", "HEADER", "no audio samples"),  # a valid wav of zero frames
        ("cut.wav", "CUT", "not audio"),  # the first 44 bytes of a real clip: no data chunk
    ],
)
def test_bad_single_inputs_exit_1_with_a_message(
    name: str, content: bytes | str | None, expect: str, speech_clips: list[Clip], tmp_path: Path
) -> None:
    path = tmp_path / name
    if content == "HEADER":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    elif content == "CUT":
        path.write_bytes(speech_clips[0].path.read_bytes()[:44])
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    proc = twi_asr("transcribe", path, "--model", "tiny.en")
    assert proc.returncode == 1, proc.stderr
    assert expect in proc.stderr.lower() and name in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def _fill_hub_cache(hf_home: Path, repo_id: str, files_from: Path) -> None:
    """Lay out a Hugging Face hub cache entry by hand, as a previous online download would."""
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        if f.is_file():
            os.symlink(f, snap / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_hub_id_from_a_prefilled_cache_offline(
    speech_clips: list[Clip], tiny_en_hf: Path, tiny_en_ct2: Path, tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf"
    _fill_hub_cache(hf_home, "twi-asr-test/whisper-tiny-en", tiny_en_hf)
    _fill_hub_cache(hf_home, "twi-asr-test/faster-whisper-tiny-en", tiny_en_ct2)
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    clip = speech_clips[0]
    for repo, engine in (("whisper-tiny-en", "transformers"), ("faster-whisper-tiny-en", "ctranslate2")):
        out = tmp_path / repo
        proc = twi_asr(
            "transcribe", clip.path, "--model", f"twi-asr-test/{repo}", "-o", out, "-f", "json", env=env
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads((out / clip.path.with_suffix(".json").name).read_text())
        assert doc["engine"] == engine  # --engine auto followed the cached folder's layout
        assert doc["model"] == f"twi-asr-test/{repo}"
        assert wer(clip.text, doc["text"]) < MAX_WER


def test_models_convert_then_transcribe(speech_clips: list[Clip], tiny_en_hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct2-int8"
    proc = twi_asr("models", "convert", tiny_en_hf, out, "--quantization", "int8")
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.bin").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "preprocessor_config.json").is_file() and (out / "generation_config.json").is_file()
    proc = twi_asr("models", "convert", tiny_en_hf, out)  # refuses to overwrite without --force
    assert proc.returncode == 2
    texts = [c.text for c in speech_clips[:3]]
    proc = twi_asr("transcribe", *[c.path for c in speech_clips[:3]], "--model", out, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    hyps = [json.loads(line)["text"] for line in proc.stdout.splitlines()]
    assert len(hyps) == 3 and wer(texts, hyps) < MAX_WER, hyps
