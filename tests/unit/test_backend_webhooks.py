"""Webhooks (``twi_asr.backend.services.webhooks``): signatures, and delivery to a REAL HTTP receiver.

The receiver is ``http.server`` on a loopback port, the database a migrated
SQLite file. Time is stepped with ``now=`` instead of sleeping through back-off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from twi_asr.backend.db.engine import Database
from twi_asr.backend.db.migrate import upgrade
from twi_asr.backend.db.models import Job, User, WebhookDelivery
from twi_asr.backend.services.webhooks import deliver_due, enqueue, payload, sign, verify

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
TWI = "Ɔkwan tware asuo, asuo tware ɔkwan: ɛnnɛ yɛ da pa."


# --------------------------------------------------------------------------- sign / verify
def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"type":"job.done"}'
    header = sign("whsec_x", body, 1700000000)
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_the_real_thing_and_refuses_tampering() -> None:
    body = payload("job.done", {"id": "job_1", "text": TWI}).encode()
    header = sign("s3cret", body, 1_000_000)
    assert verify("s3cret", body, header, now=1_000_010)
    assert not verify("s3cret", body.replace("ɛnnɛ".encode(), b"enne"), header, now=1_000_010)  # body
    assert not verify("other", body, header, now=1_000_010)  # secret
    forged = header.replace("t=1000000", "t=1000005")
    assert not verify("s3cret", body, forged, now=1_000_010)  # the timestamp is signed too
    assert not verify("s3cret", body, header, now=1_000_000 + 301)  # too old: a replay
    assert not verify("s3cret", body, header, now=1_000_000 - 301)  # from the future
    assert verify("s3cret", body, header, now=1_000_000 + 900, tolerance_s=1000)
    for junk in ("", "t=abc,v1=00", "v1=00", "t=1000000", "garbage", f"t=1,t=2,v1={header[-64:]}"):
        assert not verify("s3cret", body, junk, now=1_000_000)
    rotated = f"{header},v1={'0' * 64}"
    assert verify("s3cret", body, rotated, now=1_000_000)


def test_payload_is_compact_utf8_json() -> None:
    text = payload("job.failed", {"id": "job_1", "text": TWI, "created_at": T0, "error": None})
    assert TWI in text and "\\u" not in text and ": " not in text.replace(TWI, "")
    assert json.loads(text) == {
        "type": "job.failed",
        "job": {"id": "job_1", "text": TWI, "created_at": "2030-01-01T12:00:00Z", "error": None},
    }


# --------------------------------------------------------------------------- a real receiver
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers from a script (last repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [200]
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/twi"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'backend.db'}")
    upgrade(database)
    yield database
    database.dispose()


def finish_job(db: Database, url: str | None, status: str = "done", *, user: str = "ama") -> tuple[str, str]:
    """A finished job of a new user, its webhook enqueued in the same transaction: (job id, secret)."""
    with db.session() as s:
        owner = User(name=user)
        s.add(owner)
        s.flush()
        job = Job(user_id=owner.id, filename="ɛkɔm.wav", source_uri="k/ɛkɔm.wav", status=status,
                  webhook_url=url, text=TWI)  # fmt: skip
        s.add(job)
        s.flush()
        enqueue(s, job, {"id": job.id, "status": job.status, "text": TWI})
        return job.id, owner.webhook_secret


def deliveries(db: Database) -> list[WebhookDelivery]:
    from sqlalchemy import select

    with db.session() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def test_delivered_once_signed_with_twi_intact(db: Database, receiver: Receiver) -> None:
    job_id, secret = finish_job(db, receiver.url)
    assert deliver_due(db, now=T0) == 1
    assert deliver_due(db, now=T0 + timedelta(hours=1)) == 0  # delivered: never sent again
    ((headers, body),) = receiver.calls
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "twi-asr-backend"
    assert verify(secret, body, headers["x-twi-asr-signature"], now=T0.timestamp())
    event = json.loads(body.decode("utf-8"))
    assert event == {"type": "job.done", "job": {"id": job_id, "status": "done", "text": TWI}}
    (row,) = deliveries(db)
    assert headers["x-twi-asr-event-id"] == row.id
    assert row.status == "delivered" and row.attempts == 1 and row.response_status == 200
    assert row.delivered_at == T0 and row.lease_until is None and row.last_error is None


def test_500_twice_then_200_is_delivered_after_backoff(db: Database) -> None:
    receiver = Receiver(500, 500, 200)
    try:
        finish_job(db, receiver.url, "failed")
        assert deliver_due(db, now=T0) == 1
        (row,) = deliveries(db)
        assert row.status == "pending" and row.attempts == 1 and row.response_status == 500
        assert row.last_error.startswith("HTTP 500")
        assert timedelta(seconds=2) <= row.next_attempt_at - T0 <= timedelta(seconds=2.2)  # 2**1 (+jitter)
        assert deliver_due(db, now=T0 + timedelta(seconds=1)) == 0  # not due yet
        t1 = T0 + timedelta(seconds=2.3)
        assert deliver_due(db, now=t1) == 1
        (row,) = deliveries(db)
        assert timedelta(seconds=4) <= row.next_attempt_at - t1 <= timedelta(seconds=4.4)  # 2**2
        assert deliver_due(db, now=t1 + timedelta(seconds=4.5)) == 1
        (row,) = deliveries(db)
        assert row.status == "delivered" and row.attempts == 3 and row.response_status == 200
        ids = {h["x-twi-asr-event-id"] for h, _ in receiver.calls}
        assert len(receiver.calls) == 3 and ids == {row.id}  # the same event id on every retry
        assert json.loads(receiver.calls[-1][1])["type"] == "job.failed"
    finally:
        receiver.close()


def test_a_dead_url_fails_after_max_attempts(db: Database) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finish_job(db, dead)
    clock = T0
    for attempt in range(1, 4):
        assert deliver_due(db, now=clock, max_attempts=3, timeout_s=2) == 1
        (row,) = deliveries(db)
        assert row.attempts == attempt and "ConnectError" in (row.last_error or "")
        clock += timedelta(seconds=400)  # past the longest back-off (300 s + jitter)
    assert row.status == "failed" and row.response_status is None
    assert deliver_due(db, now=clock + timedelta(days=1), max_attempts=3) == 0


def test_enqueue_only_for_ends_with_a_url(db: Database, receiver: Receiver) -> None:
    finish_job(db, None, user="kofi")
    finish_job(db, receiver.url, "cancelled", user="yaw")
    finish_job(db, receiver.url, "running", user="esi")
    assert deliveries(db) == []


def test_secret_for_overrides_the_owners_secret(db: Database, receiver: Receiver) -> None:
    job_id, _secret = finish_job(db, receiver.url)
    asked: list[str] = []
    deliver_due(db, now=T0, secret_for=lambda j: asked.append(j) or "custom")  # type: ignore[func-returns-value]
    assert asked == [job_id]
    ((headers, body),) = receiver.calls
    assert verify("custom", body, headers["x-twi-asr-signature"], now=T0.timestamp())


def test_two_senders_at_once_send_each_delivery_exactly_once(db: Database, receiver: Receiver) -> None:
    for i in range(12):
        finish_job(db, receiver.url, user=f"user{i}")
    counts: list[int] = []
    barrier = threading.Barrier(3)

    def sender() -> None:
        barrier.wait()
        counts.append(deliver_due(db, now=T0))

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 12 and len(receiver.calls) == 12
    assert len({h["x-twi-asr-event-id"] for h, _ in receiver.calls}) == 12
    assert {r.status for r in deliveries(db)} == {"delivered"}
