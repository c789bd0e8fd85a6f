"""Presigned uploads and big uploads, end to end: real backends on local storage and on S3 (moto).

What is real: one ``twi-asr serve --model tiny.en``, backends as processes (SQLite), a moto S3
server over a socket whose presigned URLs httpx PUTs to, espeak-ng speech under the Twi name
``ɔkɔm nsɛm.wav``, and a 200 MiB multipart upload streamed from disk while the backend's
resident memory is sampled from ``/proc`` every 50 ms.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from ..conftest import speak
from ..services import CREDS, EASY_SENTENCES, Server, start_server, stop_server
from .harness import Backend, auth, backend_env, create_user, start_backend, stop_backend, wait_job

pytestmark = pytest.mark.slow

TWI_NAME = "ɔkɔm nsɛm.wav"
BUCKET, PREFIX, OTHER_BUCKET = "twi-backend", "prod/v1", "other-bucket"
BIG_BYTES = 200 * 2**20


@dataclass
class Site:
    backend: Backend
    data_dir: Path
    admin: str

    @property
    def url(self) -> str:
        return self.backend.url

    def new_user(self) -> str:
        r = httpx.post(
            f"{self.url}/v1/users",
            headers=auth(self.admin),
            json={"name": f"u{uuid.uuid4().hex[:8]}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"])


@dataclass
class Stack:
    asr: Server
    local: Site
    s3: Site
    idle: Site


def _s3(moto: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(EASY_SENTENCES[0], tmp_path_factory.mktemp("clip") / TWI_NAME)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto: str, clip: Path) -> Iterator[Stack]:
    """8001 loads while three backends' databases are made, then the backends start side by side:
    ``local`` (folder storage, 2 workers), ``s3`` (moto bucket under a prefix, 2 workers) and
    ``idle`` (folder storage, ``--workers 0``: never calls 8001)."""
    folder = tmp_path_factory.mktemp("uploads")
    s3 = _s3(moto)
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(clip), OTHER_BUCKET, f"in/{TWI_NAME}")
    s3_env = CREDS | {"AWS_ENDPOINT_URL": moto}
    plan = {
        "local": ({}, None, ("--workers", "2")),
        "s3": (s3_env, f"s3://{BUCKET}/{PREFIX}", ("--workers", "2")),
        "idle": ({}, None, ("--workers", "0")),
    }

    def prepare(name: str) -> tuple[dict[str, str], str]:
        extra, storage, _ = plan[name]
        (folder / name).mkdir()
        env = backend_env(folder / name, storage=storage, extra=extra)
        return env, create_user(env, "admin", admin=True)

    started: list[Any] = []
    with ThreadPoolExecutor(4) as ex:
        try:
            loading = ex.submit(start_server, folder / "asr.log")
            prepared = {name: ex.submit(prepare, name) for name in plan}
            asr = loading.result()
            started.append(asr)

            def launch(name: str) -> Site:
                env, admin = prepared[name].result()
                backend = start_backend(folder / name / "backend.log", env, [asr.url], *plan[name][2])
                started.append(backend)
                return Site(backend, folder / name, admin)

            local, on_s3, idle = ex.map(launch, plan)
            yield Stack(asr, local, on_s3, idle)
        finally:
            list(ex.map(lambda p: stop_server(p) if isinstance(p, Server) else stop_backend(p), started))


def new_upload(site: Site, key: str, size: int, filename: str = TWI_NAME) -> dict[str, Any]:
    r = httpx.post(
        f"{site.url}/v1/uploads",
        headers=auth(key),
        json={"filename": filename, "content_type": "audio/wav", "size": size},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def job_from(site: Site, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{site.url}/v1/jobs", headers=auth(key), json=body, timeout=30)


def expect_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.json()["error"]["code"] == code, r.text


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_local_presigned_upload(stack: Stack, clip: Path) -> None:
    site = stack.local
    key, stranger = site.new_user(), site.new_user()
    data = clip.read_bytes()
    up = new_upload(site, key, len(data))
    assert up["upload_id"].startswith("upl_") and up["method"] == "PUT"
    assert up["url"].startswith(f"{site.url}/v1/uploads/{up['upload_id']}/content?")
    assert up["headers"] == {"Content-Type": "audio/wav"} and up["expires_at"].endswith("Z")

    # a job before the bytes arrived
    expect_error(job_from(site, key, {"upload_id": up["upload_id"]}), 409, "upload_incomplete")
    # tampered URLs: the signature, the expiry, or another upload's signature
    sig = parse_qs(urlsplit(up["url"]).query)["signature"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    later = str(int(parse_qs(urlsplit(up["url"]).query)["expires"][0]) + 3600)
    other = new_upload(site, key, len(data))
    for url in (
        with_query(up["url"], signature=flipped),
        with_query(up["url"], expires=later),
        with_query(up["url"], signature=""),
        up["url"].replace(up["upload_id"], other["upload_id"]),
    ):
        expect_error(
            httpx.put(url, content=data, headers=up["headers"], timeout=30), 403, "invalid_signature"
        )
    stored = site.data_dir / "storage" / "uploads" / up["upload_id"] / TWI_NAME
    assert not stored.exists()

    r = httpx.put(up["url"], content=data, headers=up["headers"], timeout=30)  # no Authorization header
    assert r.status_code == 204, r.text
    assert stored.read_bytes() == data

    expect_error(job_from(site, stranger, {"upload_id": up["upload_id"]}), 404, "upload_not_found")
    r = job_from(site, key, {"upload_id": up["upload_id"], "language": "en"})
    assert r.status_code == 202, r.text
    done = wait_job(site.url, key, r.json()["id"], timeout_s=120)
    assert done["status"] == "done" and done["filename"] == TWI_NAME, done
    assert {"please", "call", "stella"} <= set(done["text"].lower().replace(".", "").split()), done["text"]
    assert done["size_bytes"] == len(data)
    expect_error(job_from(site, key, {"upload_id": up["upload_id"]}), 409, "upload_used")

    # deleting the job removes its outputs and the upload it came from
    assert (site.data_dir / "storage" / "jobs" / done["id"]).is_dir()
    assert httpx.delete(f"{site.url}/v1/jobs/{done['id']}", headers=auth(key), timeout=10).status_code == 204
    assert not (site.data_dir / "storage" / "jobs" / done["id"]).exists() and not stored.parent.exists()


def test_upload_requests_that_are_refused(stack: Stack) -> None:
    site = stack.local
    key = site.new_user()
    r = httpx.post(
        f"{site.url}/v1/uploads",
        headers=auth(key),
        json={"filename": "notes.txt", "content_type": "text/plain"},
        timeout=10,
    )
    expect_error(r, 415, "unsupported_media_type")
    r = httpx.post(
        f"{site.url}/v1/uploads", headers=auth(key), json={"filename": "a.wav", "size": 2 * 2**40}, timeout=10
    )
    expect_error(r, 413, "upload_too_large")
    expect_error(
        httpx.post(f"{site.url}/v1/uploads", json={"filename": "a.wav"}, timeout=10), 401, "unauthorized"
    )
    expect_error(job_from(site, key, {"upload_id": "upl_doesnotexist"}), 404, "upload_not_found")


def test_s3_presigned_upload_and_s3_uri(stack: Stack, moto: str, clip: Path) -> None:
    site, s3 = stack.s3, _s3(moto)
    key = site.new_user()
    data = clip.read_bytes()
    up = new_upload(site, key, len(data))
    assert up["url"].startswith(moto), up["url"]  # straight to S3, not through the backend
    expect_error(job_from(site, key, {"upload_id": up["upload_id"]}), 409, "upload_incomplete")
    r = httpx.put(up["url"], content=data, headers=up["headers"], timeout=30)
    assert r.status_code == 200, r.text
    r = job_from(site, key, {"upload_id": up["upload_id"]})
    assert r.status_code == 202, r.text
    done = wait_job(site.url, key, r.json()["id"], timeout_s=120)
    assert done["status"] == "done" and done["filename"] == TWI_NAME, done
    assert "stella" in done["text"].lower()

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")["Contents"]}
    assert f"{PREFIX}/uploads/{up['upload_id']}/{TWI_NAME}" in keys, sorted(keys)
    for fmt in ("txt", "json", "srt", "vtt", "tsv"):
        assert f"{PREFIX}/jobs/{done['id']}/output/ɔkɔm nsɛm.{fmt}" in keys, sorted(keys)
    assert all(k.startswith(PREFIX + "/") for k in keys)
    body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/jobs/{done['id']}/output/ɔkɔm nsɛm.txt")["Body"].read()
    assert "stella" in body.decode("utf-8").lower()
    srt = httpx.get(
        f"{site.url}/v1/jobs/{done['id']}/transcript", params={"format": "srt"}, headers=auth(key), timeout=10
    )
    assert srt.status_code == 200 and " --> " in srt.text

    r = job_from(site, key, {"s3_uri": f"s3://{OTHER_BUCKET}/in/{TWI_NAME}"})
    assert r.status_code == 202, r.text
    assert r.json()["filename"] == TWI_NAME
    by_uri = wait_job(site.url, key, r.json()["id"], timeout_s=120)
    assert (
        by_uri["status"] == "done" and by_uri["filename"] == TWI_NAME and "stella" in by_uri["text"].lower()
    )
    # an object that is not there: the job fails, it does not wait forever
    r = job_from(site, key, {"s3_uri": f"s3://{OTHER_BUCKET}/in/missing.wav"})
    assert r.status_code == 202, r.text
    missing = wait_job(site.url, key, r.json()["id"], timeout_s=60)
    assert missing["status"] == "failed" and missing["error"]["code"] == "audio_missing", missing

    # deleting a done job removes its objects (outputs and the upload) from the bucket
    assert httpx.delete(f"{site.url}/v1/jobs/{done['id']}", headers=auth(key), timeout=10).status_code == 204
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/").get("Contents", [])}
    assert not {k for k in left if done["id"] in k or up["upload_id"] in k}, sorted(left)


# --- a 200 MiB multipart upload in bounded memory ----------------------------------------------


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _big_wav(path: Path, size: int) -> Path:
    """A valid 16 kHz mono 16-bit WAV header and silence to ``size`` bytes (sparse on disk)."""
    data = size - 44
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )
    with path.open("wb") as fh:
        fh.write(header)
        fh.truncate(size)
    return path


def test_200_mb_multipart_upload_in_bounded_memory(stack: Stack, tmp_path: Path, clip: Path) -> None:
    site = stack.idle
    key = site.new_user()
    pid = site.backend.proc.pid
    fresh_kb = _rss_kb(pid)
    warm = httpx.post(
        f"{site.url}/v1/jobs",
        headers=auth(key),
        files={"file": (clip.name, clip.read_bytes(), "audio/wav")},
        timeout=60,
    )  # the first submit imports the probe
    assert warm.status_code == 202, warm.text
    time.sleep(0.5)
    idle_kb = _rss_kb(pid)
    big = _big_wav(tmp_path / "two hours of ɛnnɛ.wav", BIG_BYTES)

    peaks = {"backend": idle_kb, "test": _rss_kb(os.getpid())}
    test_before = peaks["test"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peaks["backend"] = max(peaks["backend"], _rss_kb(pid))
            peaks["test"] = max(peaks["test"], _rss_kb(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    try:
        with big.open("rb") as fh:  # httpx streams a file part in 64 kB reads
            r = httpx.post(
                f"{site.url}/v1/jobs",
                headers=auth(key),
                files={"file": (big.name, fh, "audio/wav")},
                timeout=600,
            )
    finally:
        stop.set()
        sampler.join()
    seconds = time.monotonic() - t0
    assert r.status_code == 202, r.text
    job = r.json()
    stored = site.data_dir / "storage" / "jobs" / job["id"] / "input" / big.name
    assert stored.stat().st_size == BIG_BYTES == job["size_bytes"]
    assert abs(job["audio_seconds"] - (BIG_BYTES - 44) / 32000) < 1.0 and job["status"] == "queued"
    grew_mb = (peaks["backend"] - idle_kb) / 1024
    print(
        f"\n200 MiB upload in {seconds:.1f} s: backend RSS fresh {fresh_kb / 1024:.0f} MB, idle (warm) "
        f"{idle_kb / 1024:.0f} MB, peak {peaks['backend'] / 1024:.0f} MB (+{grew_mb:.0f} MB); "
        f"test process +{(peaks['test'] - test_before) / 1024:.0f} MB"
    )
    assert grew_mb < 150, f"the backend grew {grew_mb:.0f} MB during a 200 MiB upload"
    assert (peaks["test"] - test_before) / 1024 < 100, "the test itself held the upload in memory"
