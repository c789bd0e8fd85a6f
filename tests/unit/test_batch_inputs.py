"""Batch inputs: reference files (TSV/CSV, headers, quoting, matching) and manifests (CSV/TSV/JSONL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twi_asr.batch.references import load_references, match_references, parse_references
from twi_asr.batch.sources import expand_sources, is_manifest, parse_manifest
from twi_asr.errors import UsageError


# --------------------------------------------------------------------------- references
def test_tsv_without_header_keeps_quotes_and_commas() -> None:
    refs = parse_references('a.wav\tHe said "hi", then left.\nsub/b.wav\tƐyɛ adeɛ pa\n', name="r.tsv")
    assert refs == {"a.wav": 'He said "hi", then left.', "sub/b.wav": "Ɛyɛ adeɛ pa"}


def test_tsv_header_is_skipped_and_only_the_first_tab_splits() -> None:
    refs = parse_references("path\ttext\n./a.wav\tone\ttwo\n\n", name="refs.tsv")
    assert refs == {"a.wav": "one\ttwo"}


def test_csv_with_header_bom_and_quoted_commas() -> None:
    refs = parse_references('\ufefffile,reference\na.wav,"hello, world"\nb,plain text\n', name="r.csv")
    assert refs == {"a.wav": "hello, world", "b": "plain text"}


def test_csv_unquoted_commas_stay_in_the_text() -> None:
    assert parse_references("a.wav,one, two, three\n", name="r.csv") == {"a.wav": "one, two, three"}


def test_a_tab_in_the_first_line_means_tsv_whatever_the_name() -> None:
    assert parse_references("a.wav\tx, y\n", name="refs.txt") == {"a.wav": "x, y"}


def test_windows_separators_are_unified() -> None:
    assert parse_references("sub\\a.wav\tx\n", name="r.tsv") == {"sub/a.wav": "x"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("a.wav\n", "expected KEY"),
        ("a.wav\tone\na.wav\ttwo\n", "listed twice"),
        ("\tno key\n", "empty key"),
    ],
)
def test_bad_reference_files_say_which_line(content: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_references(content, name="r.tsv")


def test_the_same_key_twice_with_the_same_text_is_fine() -> None:
    assert parse_references("a\tx\na\tx\n", name="r.tsv") == {"a": "x"}


def test_missing_references_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_references(tmp_path / "nope.tsv")


def test_matching_prefers_the_most_specific_key() -> None:
    refs = {
        "day1/a.wav": "full path",
        "b.wav": "by name",
        "c": "by stem",
        "day2/d": "path no suffix",
        "zz": "?",
    }
    got = match_references(["day1/a.wav", "x/b.wav", "y/c.mp3", "day2/d.flac", "e.wav"], refs)
    assert got.by_input == {
        "day1/a.wav": "full path",
        "x/b.wav": "by name",
        "y/c.mp3": "by stem",
        "day2/d.flac": "path no suffix",
    }
    assert got.unmatched == ["zz"]


def test_a_name_that_fits_two_inputs_is_refused() -> None:
    with pytest.raises(UsageError, match="fits 2 inputs"):
        match_references(["d1/a.wav", "d2/a.wav"], {"a.wav": "x"})


def test_full_paths_disambiguate_same_names() -> None:
    got = match_references(["d1/a.wav", "d2/a.wav"], {"d1/a.wav": "one", "d2/a.wav": "two"})
    assert got.by_input == {"d1/a.wav": "one", "d2/a.wav": "two"}


# --------------------------------------------------------------------------- manifests
def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")  # content is irrelevant to discovery
    return path


def test_csv_manifest_with_header_resolves_against_its_folder(tmp_path: Path) -> None:
    rows = parse_manifest('audio,text\nsub/a.wav,"hi, there"\n/abs/b.wav,\n', name="m.csv", base=tmp_path)
    assert rows[0].source == str(tmp_path / "sub/a.wav")
    assert rows[0].relative == "sub/a.wav"
    assert rows[0].text == "hi, there"
    assert rows[1].relative == "b.wav"  # absolute outside the manifest folder: name only
    assert rows[1].text == ""


def test_tsv_manifest_without_header(tmp_path: Path) -> None:
    rows = parse_manifest("a.wav\tone\nb.wav\n", name="m.tsv", base=tmp_path)
    assert [(r.relative, r.text) for r in rows] == [("a.wav", "one"), ("b.wav", None)]


def test_jsonl_manifest_nemo_keys_and_s3(tmp_path: Path) -> None:
    lines = [
        {"audio_filepath": "x/a.wav", "text": "ɛyɛ"},
        {"path": "s3://bucket/in/b.mp3"},
    ]
    rows = parse_manifest("\n".join(json.dumps(x) for x in lines), name="m.jsonl", base=tmp_path)
    assert (rows[0].relative, rows[0].text) == ("x/a.wav", "ɛyɛ")
    assert (rows[1].source, rows[1].relative, rows[1].text) == ("s3://bucket/in/b.mp3", "b.mp3", None)


def test_a_climbing_manifest_path_keeps_only_its_name(tmp_path: Path) -> None:
    (row,) = parse_manifest("../../etc/x.wav\n", name="m.tsv", base=tmp_path)
    assert row.relative == "x.wav"


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        ("not json\n", "m.jsonl", "not JSON"),
        ("[1, 2]\n", "m.jsonl", "JSON object"),
        ('{"text": "no path"}\n', "m.jsonl", "no path"),
        ("text,other\nx,y\n", "m.csv", "no path column"),
    ],
)
def test_bad_manifests(content: str, name: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_manifest(content, name=name, base=None)


def test_expand_mixes_folders_and_manifests_with_unique_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _wav(src / "a.wav")
    _wav(src / "sub" / "b.wav")
    (src / "readme.md").write_text("not audio")
    other = tmp_path / "other"
    _wav(other / "a.flac")
    manifest = other / "list.tsv"
    manifest.write_text("a.flac\tthe reference\nmissing.wav\tgone\n" + f"{src / 'a.wav'}\tdup\n")
    assert is_manifest(str(manifest))
    got = expand_sources([str(src), str(manifest)])
    rels = [i.relative for i in got.items]
    assert rels == ["a.wav", "sub/b.wav", "a-2.flac"]  # a.flac would write a.txt too: renamed
    assert got.references == {"a-2.flac": "the reference"}
    assert got.skipped == [str(src / "readme.md")]
    assert got.missing == [str(other / "missing.wav")]
