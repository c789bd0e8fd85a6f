"""Twi all the way through a REAL backend: file name, storage key, database row, every transcript
format, the download's name and the webhook keep ``ɔ``, ``ɛ`` and ``ŋ`` byte for byte.

espeak-ng has no Twi voice and tiny.en speaks no Twi, so the 8001 here is a small real HTTP server
on loopback (an ``http.server`` thread) that answers ``/ready`` and ``POST /v1/audio/transcriptions``
with a Twi ``verbose_json`` body. Three setups: SQLite + local folder, PostgreSQL + local folder,
PostgreSQL + S3 (moto).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")

from sqlalchemy import select  # noqa: E402

from twi_asr.backend.db.engine import Database  # noqa: E402
from twi_asr.backend.db.models import Job, WebhookDelivery  # noqa: E402
from twi_asr.backend.services.webhooks import verify  # noqa: E402
from twi_asr.backend.settings import BackendSettings  # noqa: E402

from ..services import CREDS  # noqa: E402
from .harness import Backend, auth, backend_env, create_user, start_backend, stop_backend, wait_job  # noqa: E402

FILENAME = "ɔkɔm nsɛm.wav"
SEGMENTS = [(0.0, 1.6, "Mepɛ sɛ meda."), (1.6, 3.1, "Ɔkɔm de me."), (3.1, 4.4, "Ma me ŋkwan.")]
TEXT = " ".join(t for _, _, t in SEGMENTS)  # "Mepɛ sɛ meda. Ɔkɔm de me. Ma me ŋkwan."
FORMATS = ("txt", "json", "srt", "vtt", "tsv")
assert "ŋ" in TEXT and "ɔ" in TEXT.lower() and "ɛ" in TEXT


def verbose_body() -> dict[str, Any]:
    """What a Twi checkpoint's 8001 answers (OpenAI ``verbose_json``)."""
    return {
        "task": "transcribe",
        "language": "tw",
        "duration": 4.4,
        "text": TEXT,
        "segments": [
            {"id": i, "seek": 0, "start": a, "end": b, "text": " " + t, "tokens": [], "temperature": 0.0,
             "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}
            for i, (a, b, t) in enumerate(SEGMENTS)
        ],
        "model": "stub-twi",
        "engine": "stub",
    }  # fmt: skip


# --------------------------------------------------------------------------- the stand-in 8001
class Stub8001:
    """A real HTTP server thread: ``/ready`` 200, ``/v1/audio/transcriptions`` the Twi answer.

    Keeps every transcription request's raw body and headers (chunked or sized, both are read)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path in ("/ready", "/health"):
                    self._send(200, {"status": "ready"})
                else:
                    self._send(404, {"error": {"code": "route_not_found", "message": self.path}})

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                with stub.lock:
                    stub.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if self.path != "/v1/audio/transcriptions":
                    self._send(404, {"error": {"code": "route_not_found", "message": self.path}})
                    return
                self._send(200, verbose_body())

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """Webhook receiver: a real HTTP server thread that keeps every POST's headers and raw body."""

    def __init__(self) -> None:
        self.hits: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.hits.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/twi"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub8001]:
    server = Stub8001()
    yield server
    server.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4.4 s 16 kHz WAV named ``ɔkɔm nsɛm.wav`` (silence: the stub does not listen)."""
    path = tmp_path_factory.mktemp("twi-audio") / FILENAME
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * 4.4))
    return path


# --------------------------------------------------------------------------- setups
@dataclass
class Setup:
    backend: Backend
    key: str
    database_url: str
    storage_root: Path | None  # a local folder, or None for S3
    bucket: str | None
    s3: Any = None

    def stored_keys(self) -> list[bytes]:
        """Every stored object's key as UTF-8 bytes, relative to the storage root (the folder, or
        ``s3://bucket/backend/``): file names as the OS gives them, keys as S3 lists them."""
        if self.storage_root is not None:
            root = os.fsencode(self.storage_root)
            return [os.path.join(d, f)[len(root) + 1 :] for d, _, files in os.walk(root) for f in files]
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="backend/").get("Contents", [])
        return [obj["Key"].encode("utf-8")[len(b"backend/") :] for obj in listing]


@pytest.fixture(params=["sqlite+local", "postgresql+local", "postgresql+s3"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, stub: Stub8001) -> Iterator[Setup]:
    database, storage_kind = request.param.split("+")
    url = (
        str(request.getfixturevalue("pg_url"))
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'b.db'}"
    )
    extra = {"TWI_ASR_POLL_INTERVAL_S": "0.1"}
    storage_root: Path | None = tmp_path / "storage"
    storage, bucket, s3 = str(storage_root), None, None
    if storage_kind == "s3":
        import boto3

        endpoint = str(request.getfixturevalue("moto"))
        bucket, storage_root = f"twi-{uuid.uuid4().hex[:10]}", None
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=CREDS["AWS_DEFAULT_REGION"],
                          aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        s3.create_bucket(Bucket=bucket)
        storage = f"s3://{bucket}/backend"
        extra |= {**CREDS, "TWI_ASR_S3_ENDPOINT_URL": endpoint}
    env = backend_env(tmp_path / "data", database_url=url, storage=storage, extra=extra)
    backend = start_backend(tmp_path / "backend.log", env, [stub.url])
    try:
        yield Setup(backend, create_user(env, "akosua"), url, storage_root, bucket, s3)
    finally:
        stop_backend(backend)


# --------------------------------------------------------------------------- the test
def test_twi_survives_byte_for_byte(setup: Setup, audio: Path, stub: Stub8001, receiver: Receiver) -> None:
    be, key = setup.backend, setup.key
    with audio.open("rb") as fh:
        r = httpx.post(f"{be.url}/v1/jobs", headers=auth(key), timeout=60, data={"webhook_url": receiver.url},
                       files={"file": (FILENAME, fh, "audio/wav")})  # fmt: skip
    assert r.status_code == 202, r.text
    assert r.json()["filename"] == FILENAME
    job = wait_job(be.url, key, r.json()["id"], timeout_s=60)
    assert job["status"] == "done", (job, be.log_tail())
    assert job["filename"] == FILENAME and job["text"] == TEXT
    raw_job = httpx.get(f"{be.url}/v1/jobs/{job['id']}", headers=auth(key), timeout=10).content
    assert TEXT.encode() in raw_job and FILENAME.encode() in raw_job  # UTF-8 as is, no \\u escapes

    # what the 8001 was sent: the job's audio under its own name, with the request id
    headers, body = stub.requests[-1]
    assert f'filename="{FILENAME}"'.encode() in body, body[:400]  # UTF-8, as the user named it
    assert audio.read_bytes() in body and headers.get("x-request-id")

    # the storage key: the input and every output keep the name byte for byte
    keys = setup.stored_keys()
    stem = FILENAME.rsplit(".", 1)[0].encode()
    assert f"jobs/{job['id']}/input/{FILENAME}".encode() in keys, keys
    for fmt in FORMATS:
        assert any(k.endswith(b"/output/" + stem + b"." + fmt.encode()) for k in keys), (fmt, keys)

    # every format: the Twi text byte for byte, and a download named after the upload
    for fmt in FORMATS:
        got = httpx.get(f"{be.url}/v1/jobs/{job['id']}/transcript", params={"format": fmt}, headers=auth(key),
                        timeout=10)  # fmt: skip
        assert got.status_code == 200, got.text
        for _, _, segment in SEGMENTS:
            assert segment.encode("utf-8") in got.content, (fmt, got.content)
        if fmt == "json":
            assert TEXT.encode("utf-8") in got.content, got.content  # ensure_ascii=False
        if fmt == "txt":
            assert got.content == "".join(t + "\n" for _, _, t in SEGMENTS).encode("utf-8"), got.content
        expected = f"filename*=UTF-8''%C9%94k%C9%94m%20ns%C9%9Bm.{fmt}"
        assert expected in got.headers["content-disposition"], got.headers["content-disposition"]
        assert got.headers["content-disposition"].isascii()
    as_json = httpx.get(f"{be.url}/v1/jobs/{job['id']}/transcript", params={"format": "json"},
                        headers=auth(key), timeout=10)  # fmt: skip
    assert json.loads(as_json.content)["text"] == TEXT

    # the database row, read with SQLAlchemy
    db = Database(BackendSettings(database_url=setup.database_url).resolved_database_url())
    try:
        with db.session() as s:
            row = s.scalars(select(Job).where(Job.id == job["id"])).one()
            assert row.text is not None and row.text.encode("utf-8") == TEXT.encode("utf-8")
            assert row.filename.encode("utf-8") == FILENAME.encode("utf-8")
            assert row.source_uri.endswith(FILENAME)
            delivery = s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job["id"])).one()
            assert TEXT.encode() in delivery.payload.encode()
    finally:
        db.dispose()

    # the webhook carries it too, signed over the UTF-8 bytes
    deadline = time.monotonic() + 30
    while not receiver.hits and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.hits) == 1, receiver.hits
    hook_headers, hook_body = receiver.hits[0]
    secret = httpx.get(f"{be.url}/v1/me", headers=auth(key), timeout=10).json()["webhook_secret"]
    assert verify(secret, hook_body, hook_headers["x-twi-asr-signature"])
    assert TEXT.encode("utf-8") in hook_body and FILENAME.encode("utf-8") in hook_body
    event = json.loads(hook_body)
    assert (
        event["type"] == "job.done" and event["job"]["text"] == TEXT and event["job"]["filename"] == FILENAME
    )

    # the OpenAI-compatible route keeps it too (a sync job with the same name)
    with audio.open("rb") as fh:
        sync = httpx.post(
            f"{be.url}/v1/audio/transcriptions",
            headers=auth(key),
            timeout=60,
            data={"response_format": "srt"},
            files={"file": (FILENAME, fh, "audio/wav")},
        )
    assert sync.status_code == 200, sync.text
    assert all(t.encode() in sync.content for _, _, t in SEGMENTS), sync.content
    sync_job = httpx.get(
        f"{be.url}/v1/jobs/{sync.headers['x-twi-asr-job-id']}", headers=auth(key), timeout=10
    )
    assert sync_job.json()["filename"] == FILENAME and sync_job.json()["text"] == TEXT
