"""The backend's local object store: Twi names kept as-is, atomic writes, keys that cannot escape."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from twi_asr.backend import blobs
from twi_asr.backend.blobs import LocalBlobStore, check_key, open_store
from twi_asr.backend.errors import InvalidInput, NotFound, StorageUnavailable, TooLarge

TWI_KEY = "jobs/job_abc/ɔkɔm nsɛm.wav"


class ChunkSource(io.RawIOBase):
    """A stream of ``total`` bytes in short reads, calling ``during(n)`` after each read."""

    def __init__(self, total: int, *, during=None, fail_at: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.total, self.sent, self.during, self.fail_at = total, 0, during, fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.fail_at is not None and self.sent >= self.fail_at:
            raise ConnectionResetError("the client hung up")
        n = min(len(buffer), self.total - self.sent, 256 * 1024)
        buffer[:n] = bytes([self.sent % 251]) * n
        self.sent += n
        if self.during is not None:
            self.during(self.sent)
        return n


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "storage")


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_round_trip_keeps_twi_names_byte_for_byte(store: LocalBlobStore, tmp_path: Path) -> None:
    data = "Ɔkɔm de me. Ɛyɛ nokware, ŋ.".encode() * 1000
    assert store.put_stream(TWI_KEY, io.BytesIO(data), content_type="audio/wav") == len(data)
    on_disk = store.root / "jobs" / "job_abc" / "ɔkɔm nsɛm.wav"
    assert on_disk.read_bytes() == data
    assert os.listdir(store.root / "jobs" / "job_abc") == ["ɔkɔm nsɛm.wav"]  # no NFD, no temp file left
    assert store.read_bytes(TWI_KEY) == data
    with store.open(TWI_KEY) as f:
        assert f.read() == data
    dest = tmp_path / "work" / "ɛ copy.wav"
    assert store.download_to(TWI_KEY, dest) == len(data)
    assert dest.read_bytes() == data
    assert store.size(TWI_KEY) == len(data)

    store.put_bytes("jobs/job_abc/transcript.srt", "1\nMe din de Kwabena ɔ\n".encode())
    assert store.read_bytes("jobs/job_abc/transcript.srt").decode() == "1\nMe din de Kwabena ɔ\n"
    store.put_bytes("jobs/job_abc/transcript.srt", b"replaced")
    assert store.read_bytes("jobs/job_abc/transcript.srt") == b"replaced"


def test_put_stream_counts_bytes_of_short_reads(store: LocalBlobStore) -> None:
    assert store.put_stream("a/b.bin", ChunkSource(3_000_001)) == 3_000_001
    assert store.size("a/b.bin") == 3_000_001


def test_too_large_leaves_nothing_and_keeps_the_old_object(store: LocalBlobStore) -> None:
    with pytest.raises(TooLarge) as err:
        store.put_stream("up/new.wav", ChunkSource(3 << 20), max_bytes=1 << 20)
    assert err.value.status == 413 and err.value.code == "upload_too_large"
    assert store.size("up/new.wav") is None
    assert _all_files(store.root) == []  # no temp file either

    store.put_bytes("up/old.wav", b"old")
    with pytest.raises(TooLarge):
        store.put_stream("up/old.wav", ChunkSource(3 << 20), max_bytes=1 << 20)
    assert store.read_bytes("up/old.wav") == b"old"
    assert _all_files(store.root) == ["up/old.wav"]
    assert store.put_stream("up/exact.wav", ChunkSource(1 << 20), max_bytes=1 << 20) == 1 << 20


def test_a_reader_sees_the_old_object_until_the_new_one_is_whole(store: LocalBlobStore) -> None:
    store.put_bytes("k/a.wav", b"old version")
    seen: list[bytes] = []
    store.put_stream(
        "k/a.wav", ChunkSource(2 << 20, during=lambda n: seen.append(store.read_bytes("k/a.wav")))
    )
    assert seen and set(seen) == {b"old version"}
    assert store.size("k/a.wav") == 2 << 20


def test_a_failing_source_propagates_as_it_was_and_leaves_nothing(store: LocalBlobStore) -> None:
    with pytest.raises(ConnectionResetError):  # the client's doing, not a storage failure
        store.put_stream("k/cut.wav", ChunkSource(4 << 20, fail_at=1 << 20))
    assert _all_files(store.root) == []


BAD_KEYS = [
    "",
    "../x",
    "a/../../x",
    "a/..",
    "/etc/passwd",
    "a\\b",
    "..\\x",
    "a\x00b",
    "a//b",
    "./a",
    "a/",
    "a\nb",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_escape_the_root_are_refused(store: LocalBlobStore, tmp_path: Path, key: str) -> None:
    for call in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.read_bytes(key),
        lambda: store.open(key),
        lambda: store.size(key),
        lambda: store.download_to(key, tmp_path / "d"),
        lambda: store.delete_prefix(key if key != "a/" else "../"),  # a folder may end in "/"
        lambda: store.presign_put(key, content_type="audio/wav", expires_s=60),
    ):
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.status == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_check_key_limits() -> None:
    assert check_key("jobs/j/ɔ ɛ ŋ.wav") == "jobs/j/ɔ ɛ ŋ.wav"
    assert check_key("ɛ" * 127) == "ɛ" * 127  # 254 bytes: one file name
    with pytest.raises(InvalidInput):
        check_key("ɛ" * 128)  # 256 bytes: over a file name's limit
    with pytest.raises(InvalidInput):
        check_key("/".join(["abcdefgh"] * 120))  # over S3's 1024 bytes


def test_delete_prefix_deletes_one_folder_and_counts(store: LocalBlobStore) -> None:
    for key in (
        "jobs/j1/a.wav",
        "jobs/j1/sub/ɔ.txt",
        "jobs/j1/c.srt",
        "jobs/j10/keep.wav",
        "jobs/j2/keep.wav",
    ):
        store.put_bytes(key, b"x")
    assert store.delete_prefix("jobs/j1") == 3
    assert _all_files(store.root) == ["jobs/j10/keep.wav", "jobs/j2/keep.wav"]
    assert store.delete_prefix("jobs/j1/") == 0  # already gone: not an error
    assert store.delete_prefix("jobs/never") == 0


def test_size_and_not_found(store: LocalBlobStore, tmp_path: Path) -> None:
    assert store.size("nope/x.wav") is None
    store.put_bytes("jobs/j/a.wav", b"abc")
    assert store.size("jobs/j/a.wav") == 3
    assert store.size("jobs/j") is None  # a folder is not an object
    assert store.size("jobs/j/a.wav/deeper") is None
    for call in (
        lambda: store.read_bytes("nope/x.wav"),
        lambda: store.open("jobs/j"),
        lambda: store.download_to("nope/x.wav", tmp_path / "out.wav"),
    ):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.status == 404 and err.value.code == "blob_not_found"
    assert not (tmp_path / "out.wav").exists()


def test_check_makes_the_folder_and_leaves_no_probe(store: LocalBlobStore) -> None:
    assert not store.root.exists()
    store.check()
    assert store.root.is_dir() and list(store.root.iterdir()) == []
    assert store.presign_put("a/b.wav", content_type="audio/wav", expires_s=60) is None


@pytest.fixture
def read_only_root(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop writes")
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    yield root
    root.chmod(0o755)


def test_read_only_folder_is_storage_unavailable(read_only_root: Path) -> None:
    store = LocalBlobStore(read_only_root)
    for call in (
        store.check,
        lambda: store.put_bytes("a/b.wav", b"x"),
        lambda: store.put_stream("b", io.BytesIO(b"x")),
    ):
        with pytest.raises(StorageUnavailable) as err:
            call()
        assert err.value.status == 503 and "writable" in str(err.value)


def test_a_file_where_the_folder_should_be_is_storage_unavailable(tmp_path: Path) -> None:
    """Works as root too: no permission bits involved."""
    (tmp_path / "storage").write_bytes(b"not a folder")
    store = LocalBlobStore(tmp_path / "storage")
    with pytest.raises(StorageUnavailable):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.put_bytes("a/b.wav", b"x")


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.ENOSPC, "free some space"),
        (errno.EACCES, "writable"),
        (errno.EROFS, "writable"),
        (errno.EIO, "check"),
    ],
)
def test_a_failing_disk_is_storage_unavailable_and_leaves_nothing(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch, code: int, hint: str
) -> None:
    """The failures chmod would show as a non-root user, and a full disk, injected where the write lands."""

    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(blobs.os, "fsync", failing)
    with pytest.raises(StorageUnavailable) as err:
        store.put_stream("jobs/j/a.wav", ChunkSource(100_000))
    assert hint in str(err.value) and err.value.headers.get("Retry-After")
    with pytest.raises(StorageUnavailable):
        store.put_bytes("jobs/j/b.txt", b"x")
    assert _all_files(store.root) == []


def test_open_store_picks_the_kind(tmp_path: Path) -> None:
    local = open_store(str(tmp_path / "s"))
    assert isinstance(local, LocalBlobStore) and local.location == str(tmp_path / "s")
    assert isinstance(open_store(f"file://{tmp_path}/s"), LocalBlobStore)
    s3 = open_store("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:9")  # no network call
    assert s3.location == "s3://bucket/some/prefix/" and type(s3).__name__ == "S3BlobStore"
    for bad in ("", "http://x/y", "s3://"):
        with pytest.raises(InvalidInput):
            open_store(bad)
