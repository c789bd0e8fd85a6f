"""Tests for twi_asr.sinks: local and S3 output sinks behind one interface.

The S3 half talks to a real moto server on a loopback port (a thread in this
process, boto3 over a socket), not to an in-process mock.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from twi_asr.errors import EnvironmentProblem, UsageError
from twi_asr.sinks import LocalSink, OutputSink, S3Sink, open_sink, output_name, write_outputs
from twi_asr.types import Segment, Transcript
from twi_asr.writers import output_path

ESCAPES = ["../x.txt", "a/../../x.txt", "/etc/x.txt", "C:/x.txt", "c:x.txt", "..\\x.txt", "\\\\host\\x.txt"]
BAD_NAMES = ["", ".", "a/..", "x\x00.txt"]

TRANSCRIPT = Transcript(
    text="Ɛte sɛn? Me ho yɛ.",
    language="tw",
    duration=2.0,
    segments=(Segment(0, 0.0, 1.0, "Ɛte sɛn?"), Segment(1, 1.0, 2.0, "Me ho yɛ.")),
)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------- local
def test_local_write_creates_folders_and_returns_the_path(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "out"))
    assert isinstance(sink, LocalSink) and isinstance(sink, OutputSink)
    written = sink.write("day1/deep/a.srt", b"hello")
    assert written == str(tmp_path / "out" / "day1" / "deep" / "a.srt")
    assert Path(written).read_bytes() == b"hello"
    assert _files(tmp_path / "out") == ["day1/deep/a.srt"]  # no temp file left behind


def test_local_open_creates_the_folder_early(tmp_path: Path) -> None:
    open_sink(tmp_path / "new" / "out")
    assert (tmp_path / "new" / "out").is_dir()


def test_local_write_replaces_and_read_exists(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path))
    assert sink.exists("a.txt") is False
    assert sink.read("a.txt") is None
    assert sink.read("no/such/dir/a.txt") is None
    sink.write("a.txt", b"one")
    sink.write("a.txt", b"two")
    assert sink.exists("a.txt") is True
    assert sink.read("a.txt") == b"two"
    assert _files(tmp_path) == ["a.txt"]


def test_local_exists_is_false_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert open_sink(str(tmp_path)).exists("sub") is False


@pytest.mark.parametrize("name", ESCAPES)
def test_local_rejects_names_that_escape(tmp_path: Path, name: str) -> None:
    out = tmp_path / "a" / "b" / "out"
    sink = open_sink(str(out))
    with pytest.raises(UsageError):
        sink.write(name, b"x")
    with pytest.raises(UsageError):
        sink.exists(name)
    with pytest.raises(UsageError):
        sink.read(name)
    assert _files(tmp_path) == []  # nothing written anywhere


@pytest.mark.parametrize("name", BAD_NAMES)
def test_local_rejects_names_without_a_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        open_sink(str(tmp_path)).write(name, b"x")
    assert _files(tmp_path) == []


def test_local_dotdot_that_stays_inside_is_normalised(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path))
    assert sink.write("a/./../b//c.txt", b"x") == str(tmp_path / "b" / "c.txt")
    assert sink.write("win\\sub\\d.txt", b"y") == str(tmp_path / "win" / "sub" / "d.txt")


def test_local_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match="outside"):
        open_sink(str(out)).write("link/a.txt", b"x")
    assert list(elsewhere.iterdir()) == []


def test_local_unwritable_folder_is_an_environment_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(EnvironmentProblem, match="cannot write to") as info:
        open_sink(str(blocker / "out"))
    assert info.value.exit_code == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_local_read_only_folder_is_an_environment_problem(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "ro"))
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(EnvironmentProblem, match="cannot write to"):
            sink.write("a.txt", b"x")
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.parametrize("out", ["S3://bucket/x", "s3:/bucket/x", "s3:bucket"])
def test_malformed_s3_output_is_a_usage_error(out: str) -> None:
    with pytest.raises(UsageError, match="s3://bucket/prefix"):
        open_sink(out)


# ------------------------------------------------------------- naming
@pytest.mark.parametrize(
    ("relative", "fmt", "expected"),
    [
        ("a.wav", "srt", "a.srt"),
        ("day1/deep/a.b.mp3", "json", "day1/deep/a.b.json"),
        ("noext", "txt", "noext.txt"),
        ("../../etc/passwd", "txt", "etc/passwd.txt"),
        ("sub\\a.wav", "vtt", "sub/a.vtt"),
    ],
)
def test_output_name_matches_the_local_writer(tmp_path: Path, relative: str, fmt: str, expected: str) -> None:
    assert output_name(relative, fmt) == expected
    assert output_path(tmp_path, relative, fmt) == tmp_path / expected


def test_write_outputs_writes_every_format_in_utf8(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path))
    written = write_outputs(sink, TRANSCRIPT, "day1/call.wav", "txt,srt,json")
    assert written == [str(tmp_path / "day1" / f"call.{f}") for f in ("txt", "srt", "json")]
    assert sink.read("day1/call.txt") == "Ɛte sɛn?\nMe ho yɛ.\n".encode()
    assert b"00:00:01,000 --> 00:00:02,000" in (sink.read("day1/call.srt") or b"")


def test_write_outputs_with_a_bad_format_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown output format"):
        write_outputs(open_sink(str(tmp_path)), TRANSCRIPT, "a.wav", "txt,docx")
    assert _files(tmp_path) == []


# -------------------------------------------------------------------- S3
def _free_port() -> int:
    """A loopback port nothing listens on (for an unreachable endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("TWI_ASR_S3_ENDPOINT_URL", raising=False)
    return moto_endpoint


@pytest.fixture
def bucket(s3env: str) -> str:
    from twi_asr.storage import s3_client

    name = f"out-{os.urandom(4).hex()}"
    s3_client().create_bucket(Bucket=name)
    return name


def test_s3_write_read_exists_under_the_prefix(bucket: str) -> None:
    from twi_asr.storage import s3_client

    sink = open_sink(f"s3://{bucket}/results/2026/")
    assert isinstance(sink, S3Sink) and isinstance(sink, OutputSink)
    assert sink.location == f"s3://{bucket}/results/2026"
    assert sink.exists("day1/a.srt") is False
    assert sink.read("day1/a.srt") is None
    uri = sink.write("day1/a.srt", "1\nƐte sɛn?\n".encode())
    assert uri == f"s3://{bucket}/results/2026/day1/a.srt"
    assert sink.exists("day1/a.srt") is True
    assert sink.read("day1/a.srt") == "1\nƐte sɛn?\n".encode()
    head = s3_client().head_object(Bucket=bucket, Key="results/2026/day1/a.srt")
    assert head["ContentType"].startswith("application/x-subrip")
    keys = [o["Key"] for o in s3_client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["results/2026/day1/a.srt"]


def test_s3_sink_at_the_bucket_root(bucket: str) -> None:
    sink = open_sink(f"s3://{bucket}")
    assert sink.write("a/./b.txt", b"x") == f"s3://{bucket}/a/b.txt"
    assert sink.read("a/b.txt") == b"x"


def test_s3_write_outputs_mirrors_names(bucket: str) -> None:
    sink = open_sink(f"s3://{bucket}/out")
    written = write_outputs(sink, TRANSCRIPT, "day1/call.wav", "all")
    assert written == [f"s3://{bucket}/out/day1/call.{f}" for f in ("txt", "json", "srt", "vtt", "tsv")]
    assert sink.read("day1/call.txt") == "Ɛte sɛn?\nMe ho yɛ.\n".encode()


@pytest.mark.parametrize("name", ESCAPES + BAD_NAMES)
def test_s3_rejects_names_that_escape(bucket: str, name: str) -> None:
    from twi_asr.storage import s3_client

    sink = open_sink(f"s3://{bucket}/out")
    with pytest.raises(UsageError):
        sink.write(name, b"x")
    assert s3_client().list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_s3_missing_bucket_fails_when_opened(s3env: str) -> None:
    with pytest.raises(EnvironmentProblem, match="bucket does not exist") as info:
        open_sink("s3://no-such-bucket-here/out")
    assert info.value.exit_code == 3


def test_s3_endpoint_argument_wins_over_the_environment(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens here
    sink = open_sink(f"s3://{bucket}/x", endpoint_url=endpoint)
    assert sink.write("a.txt", b"1").endswith("/x/a.txt")


def test_s3_unreachable_endpoint_names_it(s3env: str) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(EnvironmentProblem, match=f"cannot reach the S3 endpoint {dead}") as info:
        open_sink("s3://any-bucket/out", endpoint_url=dead)
    assert info.value.exit_code == 3
