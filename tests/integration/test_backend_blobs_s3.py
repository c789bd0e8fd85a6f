"""The backend's S3 store against a real moto server over a socket: what AWS or MinIO would answer.

Twi keys survive as-is, a 50 MB upload streams with bounded memory, an upload over its limit leaves
no object (and no open multipart upload), presigned PUTs work from a plain HTTP client, and a
missing bucket or a stopped server is a StorageUnavailable, never a botocore traceback.
"""

from __future__ import annotations

import hashlib
import io
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from twi_asr import storage_s3
from twi_asr.backend.blobs import open_store, read_s3_uri
from twi_asr.backend.errors import InvalidInput, NotFound, StorageUnavailable, TooLarge

from .services import CREDS, start_moto

TWI_KEY = "jobs/j1/ɔkɔm nsɛm.wav"
BUCKET = "twi-backend"


class GeneratedSource(io.RawIOBase):
    """``total`` bytes made on the fly in 64 KiB short reads (like a socket), hashed as they go."""

    def __init__(self, total: int, *, fail_at: int | None = None) -> None:
        self.total, self.sent, self.fail_at = total, 0, fail_at
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fail_at is not None and self.sent >= self.fail_at:
            raise ConnectionResetError("the client hung up")
        n = min(len(buffer), self.total - self.sent, 64 * 1024)
        block = bytes([(self.sent // 65536) % 251]) * n
        buffer[:n] = block
        self.sha.update(block)
        self.sent += n
        return n


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _clean_env(monkeypatch: pytest.MonkeyPatch, endpoint: str | None) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("AWS_", "TWI_ASR_S3")):
            monkeypatch.delenv(name)
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(storage_s3, "_endpoint_override", None)


@pytest.fixture
def s3(moto: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A plain boto3 client on moto, the bucket made; the env points boto3 at moto."""
    import boto3

    _clean_env(monkeypatch, moto)
    client = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _keys(s3: Any, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_round_trip_with_a_twi_key(s3: Any, moto: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}/backend", endpoint_url=moto)
    store.check()
    data = "Ɔkɔm de me, ɛnnɛ ŋ.".encode() * 5000
    assert store.put_stream(TWI_KEY, io.BytesIO(data), content_type="audio/wav") == len(data)
    assert f"backend/{TWI_KEY}" in _keys(s3)  # the key is stored as-is, UTF-8 and spaces
    assert s3.head_object(Bucket=BUCKET, Key=f"backend/{TWI_KEY}")["ContentType"] == "audio/wav"
    assert store.read_bytes(TWI_KEY) == data
    with store.open(TWI_KEY) as f:
        assert f.read(10) == data[:10] and f.read() == data[10:]
    dest = tmp_path / "ɔkɔm.wav"
    assert store.download_to(TWI_KEY, dest) == len(data) and dest.read_bytes() == data
    assert store.size(TWI_KEY) == len(data)

    store.put_bytes("jobs/j1/transcript.txt", "Me din de Ama ɔ".encode(), content_type="text/plain")
    assert store.read_bytes("jobs/j1/transcript.txt").decode() == "Me din de Ama ɔ"
    with pytest.raises(InvalidInput):
        store.put_bytes("../escape", b"x")


def test_missing_keys(s3: Any) -> None:
    store = open_store(f"s3://{BUCKET}")  # endpoint from AWS_ENDPOINT_URL, no prefix
    assert store.size("jobs/none/x.wav") is None
    for call in (lambda: store.read_bytes("jobs/none/x.wav"), lambda: store.open("jobs/none/x.wav")):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.code == "blob_not_found"


def test_a_50_mb_upload_streams_with_bounded_memory(s3: Any, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}/big")
    source = GeneratedSource(50 * 1000 * 1000)
    tracemalloc.start()
    try:
        written = store.put_stream("jobs/j2/long recording ɛ.wav", source, max_bytes=60 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == 50 * 1000 * 1000
    assert peak < 30 * 1000 * 1000, f"uploading 50 MB peaked at {peak / 1e6:.1f} MB of Python memory"
    assert store.size("jobs/j2/long recording ɛ.wav") == written
    copy = tmp_path / "copy.wav"
    assert store.download_to("jobs/j2/long recording ɛ.wav", copy) == written
    sha = hashlib.sha256()
    with copy.open("rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    assert sha.hexdigest() == source.sha.hexdigest()


@pytest.mark.parametrize("total", [200_000, 14 << 20], ids=["one-put", "multipart"])
def test_too_large_leaves_no_object(s3: Any, total: int) -> None:
    store = open_store(f"s3://{BUCKET}/limits")
    with pytest.raises(TooLarge) as err:
        store.put_stream("jobs/j3/big.wav", GeneratedSource(total), max_bytes=total // 2)
    assert err.value.status == 413
    assert store.size("jobs/j3/big.wav") is None
    assert _keys(s3, "limits/") == []
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix="limits/").get("Uploads")


def test_a_failing_source_propagates_and_leaves_nothing(s3: Any) -> None:
    store = open_store(f"s3://{BUCKET}/cut")
    with pytest.raises(ConnectionResetError):
        store.put_stream("jobs/j4/cut.wav", GeneratedSource(12 << 20, fail_at=7 << 20))
    assert _keys(s3, "cut/") == []
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix="cut/").get("Uploads")


def test_presigned_put_works_from_plain_http(s3: Any) -> None:
    store = open_store(f"s3://{BUCKET}/uploads")
    url = store.presign_put("uploads/upl_1/ɔkɔm nsɛm.wav", content_type="audio/wav", expires_s=300)
    assert url and url.startswith("http")
    body = b"RIFF" + bytes(range(256)) * 40
    answer = httpx.put(url, content=body, headers={"Content-Type": "audio/wav"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert store.read_bytes("uploads/upl_1/ɔkɔm nsɛm.wav") == body
    head = s3.head_object(Bucket=BUCKET, Key="uploads/uploads/upl_1/ɔkɔm nsɛm.wav")
    assert head["ContentType"] == "audio/wav"


def test_presigned_urls_name_the_public_endpoint_when_one_is_set(s3: Any) -> None:
    inside = s3.meta.endpoint_url  # what the backend uses (http://127.0.0.1:PORT)
    outside = inside.replace("127.0.0.1", "localhost")  # what a client outside would reach
    store = open_store(f"s3://{BUCKET}/pub", endpoint_url=inside, public_endpoint_url=outside)
    url = store.presign_put("uploads/upl_2/ɔkɔm nsɛm.wav", content_type="audio/wav", expires_s=300)
    assert url is not None and url.startswith(outside + "/"), url
    answer = httpx.put(url, content=b"RIFF1234", headers={"Content-Type": "audio/wav"}, timeout=30)
    assert answer.status_code == 200, answer.text  # signed for the host it names
    assert store.read_bytes("uploads/upl_2/ɔkɔm nsɛm.wav") == b"RIFF1234"


def test_delete_prefix_deletes_one_job_folder(s3: Any) -> None:
    store = open_store(f"s3://{BUCKET}/del")
    for i in range(30):
        store.put_bytes(f"jobs/j5/part {i} ɛ.txt", b"x")
    store.put_bytes("jobs/j50/keep.txt", b"keep")
    assert store.delete_prefix("jobs/j5") == 30
    assert _keys(s3, "del/") == ["del/jobs/j50/keep.txt"]
    assert store.delete_prefix("jobs/j5/") == 0


def test_read_s3_uri(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="user-audio")
    s3.put_object(Bucket="user-audio", Key="field/ɔkɔm nsɛm.wav", Body=b"audio" * 1000)
    dest = tmp_path / "in" / "audio.wav"
    assert read_s3_uri("s3://user-audio/field/ɔkɔm nsɛm.wav", dest) == 5000
    assert dest.read_bytes() == b"audio" * 1000

    with pytest.raises(TooLarge):
        read_s3_uri("s3://user-audio/field/ɔkɔm nsɛm.wav", tmp_path / "big.wav", max_bytes=100)
    assert not (tmp_path / "big.wav").exists()
    for uri in ("s3://user-audio/field/none.wav", "s3://no-such-bucket-x/a.wav"):
        with pytest.raises(NotFound) as err:
            read_s3_uri(uri, tmp_path / "x.wav")
        assert err.value.code == "s3_object_not_found"
    for uri in ("http://x/y.wav", "s3://user-audio", "s3://user-audio/folder/"):
        with pytest.raises(InvalidInput):
            read_s3_uri(uri, tmp_path / "x.wav")
    assert list(tmp_path.glob("*.wav")) == [] and list((tmp_path / "in").iterdir()) == [dest]


def test_missing_bucket_is_storage_unavailable(s3: Any) -> None:
    store = open_store("s3://no-such-bucket-here/p")
    with pytest.raises(StorageUnavailable) as err:
        store.check()
    assert "does not exist" in str(err.value) and err.value.status == 503
    with pytest.raises(StorageUnavailable):
        store.put_bytes("a/b.txt", b"x")
    with pytest.raises(StorageUnavailable):
        store.put_stream("a/b.wav", io.BytesIO(b"x" * 1000))
    with pytest.raises(StorageUnavailable):
        store.read_bytes("a/b.txt")


def test_a_stopped_server_is_storage_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    proc, url = start_moto(tmp_path / "moto.log")
    try:
        _clean_env(monkeypatch, None)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        store = open_store(f"s3://{BUCKET}/p", endpoint_url=url)
        store.check()
        store.put_bytes("jobs/j/a.txt", b"x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    started = time.monotonic()
    for call in (
        store.check,
        lambda: store.read_bytes("jobs/j/a.txt"),
        lambda: store.put_stream("jobs/j/b.wav", io.BytesIO(b"x" * 1000)),
        lambda: store.size("jobs/j/a.txt"),
    ):
        with pytest.raises(StorageUnavailable) as err:
            call()
        assert "cannot reach" in str(err.value), err.value
        assert type(err.value) is StorageUnavailable  # ours, not a botocore class
    assert time.monotonic() - started < 20
