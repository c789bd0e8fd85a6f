"""Tests for twi_asr.storage: discovery of local inputs (files, folders, globs) and S3 URI parsing.

Discovery only looks at names and the file system, never at content, so the
"media" files here are a few bytes of nothing with the right extension.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from twi_asr.errors import UsageError
from twi_asr.storage import Discovery, InputItem, _glob_base, _unique, discover, is_media, split_s3


def touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def rels(found: Discovery) -> list[str]:
    return [i.relative for i in found.items]


def stems(found: Discovery) -> list[str]:
    return [str(PurePosixPath(i.relative).with_suffix("")) for i in found.items]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """rec/ with media at two depths, non-media, hidden files and a hidden folder."""
    root = tmp_path / "rec"
    touch(
        root,
        "b.wav",
        "a.MP3",
        "notes.txt",
        "cover.jpg",
        ".hidden.wav",
        ".git/objects/x.wav",
        "day1/c.flac",
        "day1/d.m4a",
        "day1/readme.md",
        "day1/deep/e.ogg",
        "day1/.DS_Store",
    )
    return root


# ------------------------------------------------------------------ folders
def test_folder_is_recursive_and_media_only(tree: Path) -> None:
    found = discover([str(tree)])
    assert sorted(rels(found)) == ["a.MP3", "b.wav", "day1/c.flac", "day1/d.m4a", "day1/deep/e.ogg"]
    assert all(not i.explicit for i in found.items)
    assert all(Path(i.source).is_file() for i in found.items)
    assert found.missing == []


def test_folder_counts_non_media_in_skipped(tree: Path) -> None:
    found = discover([str(tree)])
    assert sorted(Path(s).name for s in found.skipped) == ["cover.jpg", "notes.txt", "readme.md"]


def test_folder_ignores_hidden_files_and_folders(tree: Path) -> None:
    found = discover([str(tree)])
    everything = [i.source for i in found.items] + found.skipped
    assert not any("/." in s.replace(os.sep, "/") for s in everything), everything


def test_folder_order_is_sorted_and_deterministic(tree: Path) -> None:
    first = discover([str(tree)])
    second = discover([str(tree)])
    assert first == second
    # within each folder, files come in sorted name order
    by_folder: dict[str, list[str]] = {}
    for rel in rels(first):
        parent = str(PurePosixPath(rel).parent)
        by_folder.setdefault(parent, []).append(PurePosixPath(rel).name)
    for names in by_folder.values():
        assert names == sorted(names)


def test_folder_with_trailing_slash_gives_the_same_names(tree: Path) -> None:
    assert rels(discover([str(tree) + "/"])) == rels(discover([str(tree)]))


def test_empty_folder_is_not_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    found = discover([str(tmp_path / "empty")])
    assert found.items == [] and found.missing == [] and found.skipped == []


# ------------------------------------------------------------ explicit files
def test_explicit_media_file(tree: Path) -> None:
    found = discover([str(tree / "day1" / "c.flac")])
    assert found.items == [InputItem(source=str(tree / "day1" / "c.flac"), relative="c.flac", explicit=True)]


def test_explicit_non_media_file_is_still_an_item(tree: Path) -> None:
    found = discover([str(tree / "notes.txt")])
    assert rels(found) == ["notes.txt"]
    assert found.items[0].explicit is True
    assert found.skipped == []


def test_explicit_hidden_file_is_still_an_item(tree: Path) -> None:
    found = discover([str(tree / ".hidden.wav")])
    assert rels(found) == [".hidden.wav"]


def test_relative_spec(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    found = discover(["rec/day1"])
    assert sorted(rels(found)) == ["c.flac", "d.m4a", "deep/e.ogg"]


# ---------------------------------------------------------------- globs
def test_glob_in_one_folder(tree: Path) -> None:
    found = discover([str(tree / "day1" / "*.flac")])
    assert rels(found) == ["c.flac"]
    assert found.items[0].explicit is False  # a glob selects media, like a folder


def test_double_star_glob_names_are_relative_to_the_glob_base(tree: Path) -> None:
    found = discover([str(tree / "**" / "*.wav")])
    # hidden files and folders are not matched by ``*`` / ``**``
    assert rels(found) == ["b.wav"]
    found = discover([str(tree / "**" / "*.ogg")])
    assert rels(found) == ["day1/deep/e.ogg"]
    found = discover([str(tree / "day1" / "**" / "*")])
    assert sorted(rels(found)) == ["c.flac", "d.m4a", "deep/e.ogg"]  # media only
    assert [Path(p).name for p in found.skipped] == ["readme.md"]  # counted, not failed


def test_relative_double_star_glob(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    found = discover(["**/*.ogg", "day1/*.m4a"])
    assert rels(found) == ["day1/deep/e.ogg", "d.m4a"]


def test_glob_matches_come_sorted(tmp_path: Path) -> None:
    touch(tmp_path, "c.wav", "a.wav", "b.wav")
    assert rels(discover([str(tmp_path / "*.wav")])) == ["a.wav", "b.wav", "c.wav"]


def test_glob_base() -> None:
    assert _glob_base("rec/day1/*.wav") == Path("rec/day1")
    assert _glob_base("rec/**/x?.wav") == Path("rec")
    assert _glob_base("*.wav") == Path(".")
    assert _glob_base("/data/[ab]/*.wav") == Path("/data")


def test_tilde_glob_keeps_subfolders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    touch(tmp_path, "rec/sub1/a.wav", "rec/sub2/a.wav")
    found = discover(["~/rec/**/*.wav"])
    assert rels(found) == ["sub1/a.wav", "sub2/a.wav"]


def test_tilde_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    touch(tmp_path, "rec/sub1/a.wav")
    assert rels(discover(["~/rec"])) == ["sub1/a.wav"]


# --------------------------------------------------------------- missing
def test_missing_specs_are_listed(tree: Path) -> None:
    found = discover(
        [str(tree / "nope.wav"), str(tree / "b.wav"), str(tree / "*.nothing"), str(tree / "no-dir")]
    )
    assert rels(found) == ["b.wav"]
    assert found.missing == [str(tree / "nope.wav"), str(tree / "*.nothing"), str(tree / "no-dir")]


def test_glob_matching_only_folders_is_missing(tmp_path: Path) -> None:
    (tmp_path / "d1").mkdir()
    found = discover([str(tmp_path / "d*")])
    assert found.items == []
    assert found.missing == [str(tmp_path / "d*")]


# ------------------------------------------------------------- duplicates
def test_duplicates_are_deduplicated(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    wav = str(tree / "b.wav")
    found = discover([wav, wav, "b.wav", "./b.wav", str(tree / "*.wav"), str(tree)])
    sources = [Path(i.source).resolve() for i in found.items]
    assert len(sources) == len(set(sources))
    assert sources.count((tree / "b.wav").resolve()) == 1
    # the first spec that named it wins: explicit, with its plain name
    assert found.items[0] == InputItem(source=wav, relative="b.wav", explicit=True)
    assert sorted(rels(found)) == ["a.MP3", "b.wav", "day1/c.flac", "day1/d.m4a", "day1/deep/e.ogg"]


# ------------------------------------------------------ clashing relative names
def test_same_stem_different_extension_gets_distinct_output_stems(tmp_path: Path) -> None:
    """``a.wav`` and ``a.mp3`` would both write ``a.txt``: the second one is renamed."""
    touch(tmp_path, "a.wav", "a.mp3", "b.wav")
    found = discover([str(tmp_path)])
    assert len(found.items) == 3
    assert len(set(stems(found))) == 3
    assert sorted(rels(found)) == ["a-2.wav", "a.mp3", "b.wav"]


def test_same_name_from_two_explicit_files_is_made_unique(tmp_path: Path) -> None:
    touch(tmp_path, "x/a.wav", "y/a.wav", "z/a.wav")
    found = discover([str(tmp_path / d / "a.wav") for d in "xyz"])
    assert rels(found) == ["a.wav", "a-2.wav", "a-3.wav"]


def test_unique_gives_distinct_stems() -> None:
    taken: set[str] = set()
    names = ["a.wav", "a.mp3", "a.flac", "a-2.wav", "sub/a.wav", "sub/a.ogg", "b"]
    out = [_unique(n, taken) for n in names]
    out_stems = [str(PurePosixPath(n).with_suffix("")) for n in out]
    assert len(set(out_stems)) == len(names), out
    assert out[:3] == ["a.wav", "a-2.mp3", "a-3.flac"]
    assert out[4:6] == ["sub/a.wav", "sub/a-2.ogg"]
    # the suffix and the folder are kept
    for before, after in zip(names, out, strict=True):
        assert PurePosixPath(before).suffix == PurePosixPath(after).suffix
        assert PurePosixPath(before).parent == PurePosixPath(after).parent


def test_unique_is_a_no_op_without_clashes() -> None:
    taken: set[str] = set()
    assert [_unique(n, taken) for n in ["a.wav", "b.wav", "sub/a.wav"]] == ["a.wav", "b.wav", "sub/a.wav"]


# ------------------------------------------------------------------- misc
@pytest.mark.parametrize("name", ["a.wav", "A.WAV", "x/y.mp3", "clip.webm", "v.MP4", "s.opus", "r.3gp"])
def test_is_media_true(name: str) -> None:
    assert is_media(name)


@pytest.mark.parametrize("name", ["a.txt", "wav", "a.wav.bak", "noext", ".wav", "a.jpg"])
def test_is_media_false(name: str) -> None:
    assert not is_media(name)


def test_input_item_is_s3() -> None:
    assert InputItem(source="s3://b/k.wav", relative="k.wav").is_s3
    assert not InputItem(source="/tmp/s3:/k.wav", relative="k.wav").is_s3


# -------------------------------------------------------------------- S3
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b.wav", ("bucket", "a/b.wav")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket", ("bucket", "")),
        ("s3://my.bucket-1/a//b", ("my.bucket-1", "a//b")),
    ],
)
def test_split_s3(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3(uri) == expected


@pytest.mark.parametrize("uri", ["bucket/key", "http://bucket/key", "S3://bucket/key", "s3:/bucket/key", ""])
def test_split_s3_rejects_non_s3_uris(uri: str) -> None:
    with pytest.raises(UsageError, match="not an s3:// URI"):
        split_s3(uri)


@pytest.mark.parametrize("uri", ["s3://", "s3:///key"])
def test_split_s3_rejects_a_missing_bucket(uri: str) -> None:
    with pytest.raises(UsageError, match="no bucket"):
        split_s3(uri)
