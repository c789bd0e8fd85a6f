"""Tests for twi_asr.writers: formats, goldens, timestamps, safe paths, atomic writes.

Regenerate the golden files with ``UPDATE_GOLDEN=1 pytest tests/unit/test_writers.py``
and read the diff before committing them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from twi_asr.errors import UsageError
from twi_asr.types import Segment, Timings, Transcript, Word
from twi_asr.writers import FORMATS, output_path, parse_formats, render, write_transcript

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

TWI_LETTERS = "ɛɔŋƐƆ"


def make_transcript() -> Transcript:
    """Twi with ɛ ɔ ŋ (and capitals), a tone mark, words on one segment, and times past an hour."""
    seg0 = Segment(
        id=0,
        start=0.0,
        end=2.5,
        text=" Ɛte sɛn? Me din de Kwame.",
        words=(
            Word(0.0, 0.42, " Ɛte", 0.91),
            Word(0.42, 0.9, " sɛn?", 0.88),
            Word(1.1, 1.3, " Me", 0.97),
            Word(1.3, 1.62, " din", 0.95),
            Word(1.62, 1.8, " de", 0.99),
            Word(1.8, 2.5, " Kwame.", 0.93),
        ),
    )
    seg1 = Segment(id=1, start=3723.456, end=3725.9999999, text=" Ɔkɔɔ fie ŋkyɛn.")
    seg2 = Segment(id=2, start=3726.0, end=3727.25, text=" Yɛ̀bɛhyia bio.")
    return Transcript(
        text="Ɛte sɛn? Me din de Kwame. Ɔkɔɔ fie ŋkyɛn. Yɛ̀bɛhyia bio.",
        language="tw",
        duration=3728.0,
        segments=(seg0, seg1, seg2),
        model="twi-whisper-small",
        engine="transformers",
        timings=Timings(decode_audio=0.5, inference=3.25, total=3.9),
    )


# --- small parsers used to check structure --------------------------------------------------------

_SRT_TIME = r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2,}):(\d{2}):(\d{2})\.(\d{3})"


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def parse_srt(content: str) -> list[tuple[int, int, int, str]]:
    """(number, start ms, end ms, text) per cue; asserts the block structure."""
    if not content:
        return []
    assert content.endswith("\n") and not content.endswith("\n\n")
    cues = []
    for block in content.rstrip("\n").split("\n\n"):
        lines = block.split("\n")
        assert len(lines) >= 3, block
        assert lines[0].isdigit(), block
        m = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert m, lines[1]
        g = m.groups()
        text = "\n".join(lines[2:])
        assert "-->" not in text and all(line.strip() for line in lines[2:])
        cues.append((int(lines[0]), _ms(*g[:4]), _ms(*g[4:]), text))
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    return cues


def parse_vtt(content: str) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) per cue; asserts the header and block structure."""
    assert content.startswith("WEBVTT\n")
    blocks = content.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        assert len(lines) >= 2, block
        m = re.fullmatch(f"{_VTT_TIME} --> {_VTT_TIME}", lines[0])
        assert m, lines[0]
        g = m.groups()
        text = "\n".join(lines[1:])
        assert "-->" not in text and all(line.strip() for line in lines[1:])
        cues.append((_ms(*g[:4]), _ms(*g[4:]), text))
    return cues


def parse_tsv(content: str) -> list[tuple[int, int, str]]:
    lines = content.split("\n")
    assert lines[0] == "start\tend\ttext" and lines[-1] == ""
    rows = []
    for line in lines[1:-1]:
        start, end, text = line.split("\t")
        rows.append((int(start), int(end), text))
    return rows


# --- goldens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden(fmt: str) -> None:
    content = render(make_transcript(), fmt)
    golden = GOLDEN / f"transcript.{fmt}"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(content.encode("utf-8"))
    assert golden.read_bytes().decode("utf-8") == content


@pytest.mark.parametrize("fmt", FORMATS)
def test_written_files_match_goldens_and_are_utf8(tmp_path: Path, fmt: str) -> None:
    (path,) = write_transcript(make_transcript(), tmp_path, "clip.wav", fmt)
    assert path == tmp_path / f"clip.{fmt}"
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM
    text = data.decode("utf-8")  # strict: raises on anything that is not UTF-8
    assert b"\r\n" not in data
    for letter in TWI_LETTERS:
        assert letter in text, (fmt, letter)
    assert "Yɛ̀bɛhyia" in text  # combining tone mark kept
    assert data == (GOLDEN / f"transcript.{fmt}").read_bytes()


def test_srt_structure_and_times() -> None:
    cues = parse_srt(render(make_transcript(), "srt"))
    assert cues == [
        (1, 0, 2500, "Ɛte sɛn? Me din de Kwame."),
        (2, 3723456, 3726000, "Ɔkɔɔ fie ŋkyɛn."),
        (3, 3726000, 3727250, "Yɛ̀bɛhyia bio."),
    ]
    assert "01:02:03,456 --> 01:02:06,000" in render(make_transcript(), "srt")


def test_vtt_structure_and_times() -> None:
    content = render(make_transcript(), "vtt")
    cues = parse_vtt(content)
    assert [(s, e) for s, e, _ in cues] == [(0, 2500), (3723456, 3726000), (3726000, 3727250)]
    assert "01:02:03.456 --> 01:02:06.000" in content


def test_tsv_rows() -> None:
    assert parse_tsv(render(make_transcript(), "tsv")) == [
        (0, 2500, "Ɛte sɛn? Me din de Kwame."),
        (3723456, 3726000, "Ɔkɔɔ fie ŋkyɛn."),
        (3726000, 3727250, "Yɛ̀bɛhyia bio."),
    ]


def test_txt_one_line_per_segment() -> None:
    assert render(make_transcript(), "txt") == "Ɛte sɛn? Me din de Kwame.\nƆkɔɔ fie ŋkyɛn.\nYɛ̀bɛhyia bio.\n"


def test_json_round_trip() -> None:
    t = make_transcript()
    content = render(t, "json")
    assert "\\u" not in content  # Twi letters are written as themselves
    d = json.loads(content)
    assert set(d) >= {"text", "language", "duration", "segments", "words", "model", "engine", "timings"}
    assert len(d["words"]) == 6
    assert "words" in d["segments"][0] and "words" not in d["segments"][1]
    assert Transcript.from_dict(d) == t


# --- timestamps ------------------------------------------------------------------------------------


def _one(start: float, end: float, text: str = "ɛyɛ") -> Transcript:
    return Transcript(text=text, language="tw", duration=end, segments=(Segment(0, start, end, text),))


@pytest.mark.parametrize(
    ("start", "expected_srt"),
    [
        (3723.4564, "01:02:03,456"),
        (3723.4565, "01:02:03,457"),  # half rounds up on the decimal value
        (2.9999999, "00:00:03,000"),  # not 00:00:02,999
        (0.0005, "00:00:00,001"),
        (0.0004, "00:00:00,000"),
        (59.9996, "00:01:00,000"),
        (1.001, "00:00:01,001"),
        (0.1 + 0.2, "00:00:00,300"),
        (360000.0, "100:00:00,000"),  # hours past 99 keep all their digits
        (-1.0, "00:00:00,000"),
        (float("nan"), "00:00:00,000"),
    ],
)
def test_timestamp_rounding(start: float, expected_srt: str) -> None:
    end = start + 1 if start == start and start >= 0 else 1.0
    srt = render(_one(start, end), "srt")
    assert srt.split("\n")[1].startswith(expected_srt + " --> ")
    vtt = render(_one(start, end), "vtt")
    assert vtt.split("\n")[2].startswith(expected_srt.replace(",", ".") + " --> ")


def test_end_before_start_is_clamped() -> None:
    (cue,) = parse_srt(render(_one(5.0, 4.0), "srt"))
    assert cue[1] == cue[2] == 5000


def test_tsv_milliseconds_are_integers() -> None:
    assert render(_one(3723.4564, 3724.0005), "tsv").split("\n")[1] == "3723456\t3724001\tɛyɛ"


# --- awkward text ----------------------------------------------------------------------------------


def test_cue_text_cannot_break_srt_or_vtt() -> None:
    nasty = "a --> b\n\n\nc\r\n\r\n2\n00:00:01,000 --> 00:00:02,000\nd ---> e"
    t = Transcript(
        text=nasty,
        language="tw",
        duration=4,
        segments=(Segment(0, 0, 1, nasty), Segment(1, 1, 2, "ɔkɔ")),
    )
    srt_cues = parse_srt(render(t, "srt"))
    assert len(srt_cues) == 2 and srt_cues[1][3] == "ɔkɔ"
    assert srt_cues[0][3].split("\n")[0] == "a -> b"
    vtt_cues = parse_vtt(render(t, "vtt"))
    assert len(vtt_cues) == 2 and vtt_cues[1][2] == "ɔkɔ"
    for row in parse_tsv(render(t, "tsv")):
        assert "\n" not in row[2] and "\t" not in row[2]


def test_tsv_flattens_tabs_and_newlines() -> None:
    rows = parse_tsv(render(_one(0, 1, "ɛyɛ\tpa\nwɔ  hɔ"), "tsv"))
    assert rows == [(0, 1000, "ɛyɛ pa wɔ hɔ")]


def test_vtt_escapes_markup() -> None:
    content = render(_one(0, 1, "a < b & c"), "vtt")
    assert "a &lt; b &amp; c" in content


def test_blank_segments_are_skipped_and_numbering_stays_consecutive() -> None:
    t = Transcript(
        text="ɛ ɔ",
        language="tw",
        duration=3,
        segments=(Segment(0, 0, 1, "ɛ"), Segment(1, 1, 2, "   "), Segment(2, 2, 3, "ɔ")),
    )
    assert [c[0] for c in parse_srt(render(t, "srt"))] == [1, 2]
    assert len(parse_vtt(render(t, "vtt"))) == 2
    assert render(t, "txt") == "ɛ\nɔ\n"
    assert len(json.loads(render(t, "json"))["segments"]) == 3


def test_text_without_segments_is_one_cue() -> None:
    t = Transcript(text=" Me din de Kwame. ", language="tw", duration=4.25)
    assert parse_srt(render(t, "srt")) == [(1, 0, 4250, "Me din de Kwame.")]
    assert parse_vtt(render(t, "vtt")) == [(0, 4250, "Me din de Kwame.")]
    assert parse_tsv(render(t, "tsv")) == [(0, 4250, "Me din de Kwame.")]
    assert render(t, "txt") == "Me din de Kwame.\n"


def test_empty_transcript() -> None:
    t = Transcript(text="", language=None, duration=0.0)
    assert render(t, "srt") == ""
    assert render(t, "vtt") == "WEBVTT\n"
    assert render(t, "tsv") == "start\tend\ttext\n"
    assert render(t, "txt") == ""
    assert json.loads(render(t, "json"))["segments"] == []
    assert parse_vtt(render(t, "vtt")) == []


def test_render_unknown_format() -> None:
    with pytest.raises(UsageError, match="srt"):
        render(make_transcript(), "docx")


# --- parse_formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("srt,vtt,json", ("srt", "vtt", "json")),
        ("srt", ("srt",)),
        (" SRT , vtt,,srt ", ("srt", "vtt")),
        (["json", "txt,json"], ("json", "txt")),
        ("all", FORMATS),
        ("srt,all", FORMATS),
        (("tsv",), ("tsv",)),
    ],
)
def test_parse_formats(spec, expected) -> None:
    assert parse_formats(spec) == expected


@pytest.mark.parametrize("spec", ["docx", "srt,pdf", "", " , ", []])
def test_parse_formats_rejects(spec) -> None:
    with pytest.raises(UsageError) as info:
        parse_formats(spec)
    for fmt in FORMATS:
        assert fmt in info.value.message


# --- output paths ----------------------------------------------------------------------------------


def test_output_path_replaces_suffix_and_keeps_folders(tmp_path: Path) -> None:
    assert output_path(tmp_path, "sub/a.wav", "srt") == tmp_path / "sub" / "a.srt"
    assert output_path(tmp_path, Path("sub") / "deeper" / "b.mp3", "json") == tmp_path / "sub/deeper/b.json"
    assert output_path(tmp_path, "noext", "txt") == tmp_path / "noext.txt"
    assert output_path(tmp_path, "a.b.wav", "vtt") == tmp_path / "a.b.vtt"
    assert output_path(tmp_path, "./x/./ɔkɔ.wav", "tsv") == tmp_path / "x" / "ɔkɔ.tsv"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../x.wav", "x.srt"),
        ("../../../../x.wav", "x.srt"),
        ("/etc/passwd", "etc/passwd.srt"),
        ("a/../../b.wav", "b.srt"),
        ("a/b/../c.wav", "a/c.srt"),
        ("..\\..\\win.wav", "win.srt"),
        ("C:\\Windows\\evil.wav", "Windows/evil.srt"),
        ("c:/evil.wav", "evil.srt"),
        ("//server/share/x.wav", "server/share/x.srt"),
    ],
)
def test_output_path_neutralises_escapes(tmp_path: Path, name: str, expected: str) -> None:
    out = tmp_path / "out"
    path = output_path(out, name, "srt")
    assert path == out / expected
    assert path.resolve().is_relative_to(out.resolve())


@pytest.mark.parametrize("name", ["", "/", "..", "../..", "./.", "a\x00b.wav"])
def test_output_path_rejects_unusable_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        output_path(tmp_path, name, "srt")


def test_output_path_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        output_path(tmp_path, "a.wav", "exe")


def test_output_path_rejects_symlink_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    try:
        (out / "link").symlink_to(outside, target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("symlinks not available")
    with pytest.raises(UsageError, match="outside"):
        output_path(out, "link/a.wav", "srt")
    with pytest.raises(UsageError):
        write_transcript(make_transcript(), out, "link/a.wav", "srt")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["../x.wav", "/etc/passwd", "a/../../b.wav", "..\\..\\y.wav", "/../../z"])
def test_write_never_leaves_out_dir(tmp_path: Path, name: str) -> None:
    out = tmp_path / "nested" / "out"
    before = {p for p in tmp_path.rglob("*")}
    paths = write_transcript(make_transcript(), out, name, "all")
    assert len(paths) == len(FORMATS)
    created = {p for p in tmp_path.rglob("*")} - before - {out, out.parent}
    for p in created:
        assert p.resolve().is_relative_to(out.resolve()), p
    for p in paths:
        assert p.is_file() and p.resolve().is_relative_to(out.resolve())


# --- writing ---------------------------------------------------------------------------------------


def test_write_all_formats_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_transcript(make_transcript(), out, "batch/day1/clip.wav", ["srt", "vtt,json", "txt", "tsv"])
    assert paths == [out / "batch/day1" / f"clip.{f}" for f in ("srt", "vtt", "json", "txt", "tsv")]
    assert sorted(p.name for p in (out / "batch/day1").iterdir()) == sorted(p.name for p in paths)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_write_overwrites_atomically(tmp_path: Path) -> None:
    (first,) = write_transcript(_one(0, 1, "ɛyɛ"), tmp_path, "a.wav", "txt")
    (second,) = write_transcript(_one(0, 1, "ɔkɔ"), tmp_path, "a.wav", "txt")
    assert first == second
    assert second.read_text(encoding="utf-8") == "ɔkɔ\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_file_mode_follows_umask(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old = os.umask(0o022)
    try:
        (path,) = write_transcript(_one(0, 1), tmp_path, "a.wav", "txt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_cleans_up_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_transcript(_one(0, 1), tmp_path, "a.wav", "srt")
    assert list(tmp_path.iterdir()) == []


def test_bad_format_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        write_transcript(make_transcript(), tmp_path, "a.wav", "srt,nope")
    assert list(tmp_path.iterdir()) == []
