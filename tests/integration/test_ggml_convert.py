"""The bench's GGML converter and whisper.cpp child, on real weights and real whisper.cpp.

``bench/ggml_convert.py`` turns a transformers Whisper checkpoint into whisper.cpp's f16 GGML
file; ``bench/whispercpp_child.py`` is the whisper.cpp row of ``bench/engines.py``. Checked
here, with pywhispercpp's bundled whisper.cpp:

- tiny.en (English-only) and multilingual base (told ``--language en``), both rebuilt as
  transformers checkpoints from the shipped CTranslate2 weights: the converted file loads in
  whisper.cpp, and the child, greedy, prints the same words as transformers' greedy
  ``generate`` on the checkpoint it came from: word for word on one espeak-ng clip for tiny.en,
  within 0.15 WER of it on five clips for base (f16 arithmetic turns near-ties);
- the child keeps the protocol: ``<stem>.txt``, ``_timings.json`` with the three keys, exit 0,
  nothing on stdout;
- the file read back by the layout ``whisper_model_load`` reads (a small reader here) holds
  every tensor of the checkpoint under whisper.cpp's name, f16 or f32 as whisper.cpp wants,
  equal to the f16-rounded original; the vocabulary is the tokenizer's, byte for byte;
- ``ggml_weights`` converts once: a second call returns the same file without rewriting it.

Skipped (with the reason) only where pywhispercpp, a dev dependency, is not importable.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from twi_asr import decode_audio
from twi_asr.text import wer

from .conftest import speak

pytestmark = pytest.mark.slow

pytest.importorskip(
    "pywhispercpp.model",
    reason="pywhispercpp (the whisper.cpp bench peer, in the dev extra) is not installed",
)

REPO = Path(__file__).resolve().parents[2]
CONVERTER = REPO / "bench" / "ggml_convert.py"
CHILD = REPO / "bench" / "whispercpp_child.py"
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def _module(path: Path) -> ModuleType:
    """Import a bench script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One espeak-ng English sentence, 16 kHz mono."""
    return speak(SENTENCE, tmp_path_factory.mktemp("ggml") / "fox.wav")


@pytest.fixture(scope="module")
def base_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multilingual base (the ``base`` alias), rebuilt offline as a transformers checkpoint."""
    from twi_asr.ct2_to_hf import convert_ct2_to_hf
    from twi_asr.models import resolve_model

    return convert_ct2_to_hf(resolve_model("base").path, tmp_path_factory.mktemp("base-hf"))


def transformers_greedy(hf_dir: Path, audio: Path, language: str | None) -> str:
    """transformers' own greedy decode (``num_beams=1``, no sampling) of one clip."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(hf_dir)
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir)
    samples = decode_audio(audio).samples.astype(np.float32)
    features = processor(samples, sampling_rate=16000, return_tensors="pt").input_features
    extra = {"language": language, "task": "transcribe"} if language else {}
    tokens = model.generate(features, num_beams=1, do_sample=False, **extra)
    return str(processor.batch_decode(tokens, skip_special_tokens=True)[0]).strip()


def run_child(ggml: Path, audio: Path, out: Path, *args: str) -> str:
    """The whisper.cpp row on one file; checks the protocol and returns the text it wrote."""
    listing = out.parent / f"{out.name}.list"
    listing.write_text(f"{audio}\n")
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(ggml), str(listing), str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == "", f"the child printed on stdout: {proc.stdout[:500]!r}"
    timings = json.loads((out / "_timings.json").read_text())
    assert set(timings) == {"import_s", "load_s", "work_s"}
    assert all(v > 0 for v in timings.values()), timings
    return (out / f"{audio.stem}.txt").read_text(encoding="utf-8").strip()


def convert(hf_dir: Path, out_file: Path) -> Path:
    """Run the converter's CLI, as the bench does."""
    proc = subprocess.run(
        [sys.executable, str(CONVERTER), str(hf_dir), str(out_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out_file


def test_whispercpp_on_converted_tiny_en_says_what_transformers_says(
    tiny_en_hf: Path, clip: Path, tmp_path: Path
) -> None:
    ggml = convert(tiny_en_hf, tmp_path / "tiny.en.bin")
    whispercpp = run_child(ggml, clip, tmp_path / "out", "--beam", "1", "--threads", "2", "--language", "en")
    reference = transformers_greedy(tiny_en_hf, clip, None)
    assert whispercpp, "whisper.cpp wrote no text"
    assert wer(reference, whispercpp) == 0.0, f"transformers: {reference!r}\nwhisper.cpp:  {whispercpp!r}"
    assert wer(SENTENCE, whispercpp) < 0.5, whispercpp  # and it is the sentence, roughly


#: More sentences for base: whisper.cpp computes in f16, so a first word at p 0.3 ("A" against
#: "The" on the fox clip) can go either way; over these five clips 4 of 49 words differed
#: (0.08), while a wrongly mapped tensor gives no sentence at all.
BASE_SENTENCES = (
    SENTENCE,
    "Please send the report to the office before noon tomorrow.",
    "She walked along the quiet beach and collected small shells.",
    "The train to the city leaves every hour from platform two.",
    "Good morning, how are you doing today?",
)


def test_whispercpp_on_converted_base_says_what_transformers_says(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    base_hf = request.getfixturevalue("base_hf")
    ggml = convert(base_hf, tmp_path / "base.bin")
    ours, theirs = [], []
    for i, sentence in enumerate(BASE_SENTENCES):
        audio = speak(sentence, tmp_path / f"s{i}.wav")
        ours.append(run_child(ggml, audio, tmp_path / f"out{i}", "--beam", "1", "--threads", "2",
                              "--language", "en"))  # fmt: skip
        theirs.append(transformers_greedy(base_hf, audio, "en"))
    assert all(ours), f"whisper.cpp wrote no text for some clip: {ours}"
    assert wer(theirs, ours) <= 0.15, f"transformers: {theirs}\nwhisper.cpp:  {ours}"
    assert wer(list(BASE_SENTENCES), ours) < 0.3, ours


def test_ggml_weights_converts_once(tiny_en_hf: Path, tmp_path: Path) -> None:
    converter = _module(CONVERTER)
    first = converter.ggml_weights(tiny_en_hf, tmp_path)
    stamp = first.stat().st_mtime_ns
    again = converter.ggml_weights(tiny_en_hf, tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.read_bytes()[:4] == (0x67676D6C).to_bytes(4, "little")
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial file left behind


def read_ggml(path: Path) -> tuple[list[int], np.ndarray, list[bytes], dict[str, np.ndarray]]:
    """Parse a GGML Whisper file the way whisper.cpp's loader walks it (header, mel, vocab, tensors)."""
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 0)[0] == 0x67676D6C
    header = list(struct.unpack_from("<11i", raw, 4))
    pos = 48
    n_mel, n_fft = struct.unpack_from("<ii", raw, pos)
    pos += 8
    mel = np.frombuffer(raw, "<f4", n_mel * n_fft, pos).reshape(n_mel, n_fft)
    pos += 4 * n_mel * n_fft
    (n_vocab,) = struct.unpack_from("<i", raw, pos)
    pos += 4
    vocab = []
    for _ in range(n_vocab):
        (length,) = struct.unpack_from("<I", raw, pos)
        vocab.append(raw[pos + 4 : pos + 4 + length])
        pos += 4 + length
    tensors: dict[str, np.ndarray] = {}
    while pos < len(raw):
        n_dims, name_len, ttype = struct.unpack_from("<iii", raw, pos)
        ne = struct.unpack_from(f"<{n_dims}i", raw, pos + 12)
        pos += 12 + 4 * n_dims
        name = raw[pos : pos + name_len].decode()
        pos += name_len
        dtype = {0: "<f4", 1: "<f2"}[ttype]
        count = int(np.prod(ne))
        tensors[name] = np.frombuffer(raw, dtype, count, pos).reshape(tuple(reversed(ne)))
        pos += count * np.dtype(dtype).itemsize
    return header, mel, vocab, tensors


def test_ggml_file_holds_the_checkpoint(tiny_en_hf: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    converter = _module(CONVERTER)
    header, mel, vocab, tensors = read_ggml(convert(tiny_en_hf, tmp_path / "tiny.bin"))
    config = json.loads((tiny_en_hf / "config.json").read_text())
    assert header == [51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1] == converter.hparams(config)
    assert mel.shape == (80, 201) and np.all(mel >= 0) and np.all(mel.sum(axis=1) > 0)

    tokenizer = Tokenizer.from_file(str(tiny_en_hf / "tokenizer.json"))
    assert len(vocab) == 50256  # the BPE tokens; whisper.cpp numbers <|endoftext|> on itself
    texts = tokenizer.decode_batch([[i] for i in range(len(vocab))], skip_special_tokens=False)
    valid = 0
    for token_id, (raw, text) in enumerate(zip(vocab, texts, strict=True)):
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:  # part of a multi-byte character: no text of its own
            continue
        assert decoded == text, token_id
        valid += 1
    assert valid > 45000

    weights = load_file(str(tiny_en_hf / "model.safetensors"))
    expected = {converter.ggml_name(k): v for k, v in weights.items() if converter.ggml_name(k)}
    assert set(tensors) == set(expected) and len(tensors) == 11 + 15 * 4 + 24 * 4
    f32 = {
        "encoder.positional_embedding",
        "decoder.positional_embedding",
        "encoder.conv1.bias",
        "encoder.conv2.bias",
    }
    for name, original in expected.items():
        got = tensors[name]
        wants_f32 = original.ndim == 1 or name in f32
        assert got.dtype == (np.float32 if wants_f32 else np.float16), name
        reference = original.astype(got.dtype).reshape(got.shape)
        assert np.array_equal(got, reference), name
    assert tensors["encoder.conv1.weight"].shape == (384, 80, 3)  # ne = [3, 80, 384]
    assert tensors["encoder.conv1.bias"].shape == (384, 1)  # ne = [1, 384]
    assert tensors["decoder.token_embedding.weight"].shape == (51864, 384)
