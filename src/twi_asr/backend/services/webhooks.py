"""Webhooks: a signed POST to the job's ``webhook_url`` when the job ends, retried until it lands.

The delivery is a row (:class:`~twi_asr.backend.db.models.WebhookDelivery`),
inserted by :func:`enqueue` in the same transaction that finishes the job,
so a finished job always owes its webhook and a rolled-back one never does.
:func:`deliver_due` sends what is due from any number of processes: each
delivery is claimed with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL
plus a guarded UPDATE that also works on SQLite), the HTTP call happens with
no transaction open, and the outcome is written back only if nobody else
took the delivery meanwhile.

Signature (Stripe-style, so receivers can reuse their code):
``X-Twi-Asr-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>``.
The timestamp is signed too, so an old request replayed later is refused by
:func:`verify` (``tolerance_s``). ``X-Twi-Asr-Event-Id`` (the delivery id)
stays the same across retries, for receivers that deduplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..db.engine import Database
from ..db.models import Job, User, WebhookDelivery, utcnow

__all__ = ["EVENTS", "deliver_due", "enqueue", "payload", "sign", "verify"]

log = logging.getLogger("twi_asr.backend.webhooks")

EVENTS = {"done": "job.done", "failed": "job.failed"}
"""Job states that send a webhook, and the event type each sends."""
MAX_BACKOFF_S = 300.0
USER_AGENT = "twi-asr-backend"


# --------------------------------------------------------------------------- signing
def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Twi-Asr-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return f"t={int(timestamp)},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance_s``.

    For receivers (and our tests). Compares in constant time; accepts several
    ``v1=`` values (a sender rotating its secret); anything malformed is False.
    """
    try:
        parts = [p.strip().split("=", 1) for p in header.split(",")]
        stamps = [int(v) for k, v in parts if k == "t"]
        macs = [v for k, v in parts if k == "v1"]
    except ValueError:
        return False
    if len(stamps) != 1 or not macs:
        return False
    current = time.time() if now is None else now
    if abs(current - stamps[0]) > tolerance_s:
        return False
    expected = sign(secret, body, stamps[0]).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected.encode(), mac.encode()) for mac in macs)


def payload(event_type: str, job_dict: Mapping[str, Any]) -> str:
    """The body: compact JSON ``{"type", "job"}``, UTF-8 as is (Twi letters are not escaped)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.dumps(
        {"type": event_type, "job": dict(job_dict)},
        ensure_ascii=False,
        separators=(",", ":"),
        default=default,
    )


# --------------------------------------------------------------------------- queueing
def enqueue(session: Any, job: Job, job_dict: Mapping[str, Any]) -> WebhookDelivery | None:
    """Add the delivery a finished job owes (None: no ``webhook_url``, or a state that sends none).

    Call it inside the transaction that finishes the job; ``job_dict`` is the
    job object as the API shows it, which becomes the signed body verbatim.
    """
    event = EVENTS.get(job.status)
    if not job.webhook_url or event is None:
        return None
    delivery = WebhookDelivery(
        job_id=job.id, url=job.webhook_url, payload=payload(event, job_dict), next_attempt_at=utcnow()
    )
    session.add(delivery)
    return delivery


# --------------------------------------------------------------------------- delivering
@dataclass(frozen=True)
class _Claim:
    id: str
    job_id: str
    url: str
    body: str
    attempts: int  # before this attempt: the fence for writing the outcome back
    secret: str


def deliver_due(
    db: Database,
    *,
    secret_for: Callable[[str], str] | None = None,
    timeout_s: float = 10.0,
    max_attempts: int = 8,
    now: datetime | None = None,
    limit: int = 50,
    transport: Any = None,
) -> int:
    """Send every due pending delivery (up to ``limit``); returns how many were attempted.

    ``secret_for(job_id)`` gives the signing secret; by default the job
    owner's ``webhook_secret``. 2xx is delivered; anything else (an HTTP
    error, a refused connection, a timeout) is retried after
    ``min(2**attempts, 300)`` s (+ up to 10 % jitter) and marked failed after
    ``max_attempts``. ``now`` fixes the clock (tests step time with it);
    ``transport`` is handed to httpx.
    """
    import httpx

    attempted = 0
    http: Any = None  # made on the first due delivery: an idle round costs one query, not a TLS setup
    try:
        while attempted < limit:
            # Read the clock for every delivery: a round behind slow receivers (up to ``limit`` x
            # ``timeout_s``) must not sign later ones with a stale time nor lease them already expired.
            clock = now or utcnow()
            claim = _claim_one(db, clock, lease_s=timeout_s + 30.0, secret_for=secret_for)
            if claim is None:
                break
            if http is None:
                http = httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False)
            attempted += 1
            status, error = _post(http, claim, clock)
            _record(db, claim, clock, status=status, error=error, max_attempts=max_attempts)
    finally:
        if http is not None:
            http.close()
    return attempted


def _claim_one(
    db: Database, now: datetime, *, lease_s: float, secret_for: Callable[[str], str] | None
) -> _Claim | None:
    """Lease the oldest due delivery to this caller (None: nothing due, or others took it all)."""
    from sqlalchemy import or_, select, update

    free = or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now)
    due = (WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, free)
    for _ in range(5):  # lost races: try the next candidate
        with db.session() as s:
            query = select(WebhookDelivery).where(*due).order_by(WebhookDelivery.next_attempt_at).limit(1)
            if db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = s.scalars(query).first()
            if row is None:
                return None
            taken = s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == row.id, *due)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:
                continue
            if secret_for is not None:
                secret = secret_for(row.job_id)
            else:
                secret = s.scalar(
                    select(User.webhook_secret).join(Job, Job.user_id == User.id).where(Job.id == row.job_id)
                )
            return _Claim(row.id, row.job_id, row.url, row.payload, row.attempts, secret or "")
    return None


def _post(http: Any, claim: _Claim, now: datetime) -> tuple[int | None, str | None]:
    """One POST, no transaction open: ``(status, None)`` on 2xx, else ``(status or None, why)``."""
    import httpx

    body = claim.body.encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Twi-Asr-Event-Id": claim.id,
        "X-Twi-Asr-Signature": sign(claim.secret, body, int(now.timestamp())),
    }
    try:
        response = http.post(claim.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def _record(
    db: Database,
    claim: _Claim,
    now: datetime,
    *,
    status: int | None,
    error: str | None,
    max_attempts: int,
) -> None:
    """Write the outcome back, fenced on the attempt count: a delivery taken over is left alone."""
    from sqlalchemy import update

    attempts = claim.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "lease_until": None, "response_status": status}
    if error is None:
        values.update(status="delivered", delivered_at=now, last_error=None)
    elif attempts >= max_attempts:
        values.update(status="failed", last_error=error)
        log.warning("webhook %s for %s failed for good after %d attempts: %s", claim.id, claim.job_id,
                    attempts, error)  # fmt: skip
    else:
        delay = min(2.0**attempts, MAX_BACKOFF_S) * (1 + random.random() * 0.1)
        values.update(last_error=error, next_attempt_at=now + timedelta(seconds=delay))
    with db.session() as s:
        done = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == claim.attempts,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:
            log.warning("webhook %s was taken over by another sender; its outcome is theirs", claim.id)
