"""The backend's job rules on a real (file) SQLite database: claims, leases, fencing, quotas, listing.

No HTTP and no ASR here: these are the rules that make a killed worker's job
run again and finish exactly once, checked step by step with the clock moved
by hand (leases are set in the past instead of sleeping).
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

from twi_asr.backend.blobs import open_store  # noqa: E402
from twi_asr.backend.db.engine import Database  # noqa: E402
from twi_asr.backend.db.migrate import upgrade  # noqa: E402
from twi_asr.backend.db.models import Job, WebhookDelivery, utcnow  # noqa: E402
from twi_asr.backend.errors import InvalidInput, NotFound, QuotaExceeded  # noqa: E402
from twi_asr.backend.services import execution, jobs, users  # noqa: E402
from twi_asr.backend.settings import BackendSettings  # noqa: E402


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    upgrade(db)
    settings = BackendSettings(data_dir=tmp_path, _env_file=None)
    blobs = open_store(str(tmp_path / "storage"))
    with db.session() as s:
        user, _ = users.create_user(s, "ama")
    yield db, blobs, settings, user
    db.dispose()


def _submit(env, name: str = "clip.wav", **kw):  # type: ignore[no-untyped-def]
    db, blobs, settings, user = env
    req = jobs.JobRequest(filename=name, content_type="audio/wav", **kw)
    return jobs.submit_file(db, blobs, settings, user, req, io.BytesIO(b"RIFF....not really audio"))


def _expire(db: Database, job_id: str) -> None:
    with db.session() as s:
        s.get(Job, job_id).lease_until = utcnow() - timedelta(seconds=1)


def test_a_job_is_claimed_once_even_by_racing_workers(env) -> None:  # type: ignore[no-untyped-def]
    db = env[0]
    job, created = _submit(env)
    assert created and job.status == "queued"
    claims: list[execution.Claim | None] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        claims.append(execution.claim(db, "w", 30, 5))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].job_id == job.id and won[0].attempt == 1
    assert execution.claim(db, "w", 30, 5) is None  # nothing else is due


def test_a_dead_workers_job_is_taken_over_and_the_old_worker_cannot_finish_it(env) -> None:  # type: ignore[no-untyped-def]
    db = env[0]
    job, _ = _submit(env, webhook_url="http://127.0.0.1:9/hook")
    first = execution.claim(db, "w1", 30, 5)
    assert first is not None
    assert execution.claim(db, "w2", 30, 5) is None  # the lease holds
    _expire(db, job.id)
    second = execution.claim(db, "w2", 30, 5)
    assert second is not None and second.attempt == 2 and second.token != first.token
    assert not execution.renew(db, first, 30)  # the old worker learns it lost the job
    assert execution.finish_done(db, first, {"text": "stale"}) is None
    done = execution.finish_done(db, second, {"text": "Mepɛ sɛ meda.", "duration": 1.0})
    assert done is not None and done.status == "done" and done.text == "Mepɛ sɛ meda."
    assert execution.finish_failed(db, second, "late", "twice") is None  # finished exactly once
    with db.session() as s:
        deliveries = s.query(WebhookDelivery).filter_by(job_id=job.id).all()
    assert len(deliveries) == 1 and "Mepɛ sɛ meda." in deliveries[0].payload


def test_waiting_on_the_asr_gives_the_attempt_back_but_a_crash_loop_ends(env) -> None:  # type: ignore[no-untyped-def]
    db = env[0]
    job, _ = _submit(env)
    c = execution.claim(db, "w", 30, 2)
    assert execution.release(db, c, 0, reason="no ASR server answered")
    with db.session() as s:
        row = s.get(Job, job.id)
        assert (row.status, row.attempts, row.asr_waits) == ("queued", 0, 1)
    for _ in range(2):  # two workers die mid-job
        c = execution.claim(db, "w", 30, 2)
        assert c is not None
        _expire(db, job.id)
    assert execution.claim(db, "w", 30, 2) is None
    with db.session() as s:
        row = s.get(Job, job.id)
        assert (row.status, row.error_code) == ("failed", "worker_lost")


def test_a_cancelled_running_job_cannot_be_finished(env) -> None:  # type: ignore[no-untyped-def]
    db, blobs, _, user = env
    job, _ = _submit(env)
    c = execution.claim(db, "w", 30, 5)
    cancelled = jobs.cancel_or_delete(db, blobs, user, job.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert not execution.renew(db, c, 30)
    assert execution.finish_done(db, c, {"text": "x"}) is None
    assert jobs.cancel_or_delete(db, blobs, user, job.id) is None  # now deleted, with its files
    assert not (Path(blobs.location) / "jobs" / job.id).exists()
    with db.session() as s, pytest.raises(NotFound):
        jobs.get_job(s, user, job.id)


def test_idempotency_key_returns_the_first_job(env) -> None:  # type: ignore[no-untyped-def]
    a, created_a = _submit(env, idempotency_key="k1")
    b, created_b = _submit(env, idempotency_key="k1")
    assert created_a and not created_b and a.id == b.id
    with env[0].session() as s:
        assert s.query(Job).count() == 1


def test_quotas_refuse_with_a_retry_after(env) -> None:  # type: ignore[no-untyped-def]
    db, blobs, settings, user = env
    with db.session() as s:
        users.update_user(s, s.get(type(user), user.id), {"max_concurrent_jobs": 1})
    user.max_concurrent_jobs = 1
    _submit(env)
    with pytest.raises(QuotaExceeded) as err:
        _submit(env)
    assert err.value.code == "concurrent_jobs_quota" and err.value.headers["Retry-After"] == "5"


def test_listing_pages_newest_first_and_filters(env) -> None:  # type: ignore[no-untyped-def]
    db, blobs, settings, user = env
    ids = [_submit(env, f"c{i}.wav")[0].id for i in range(5)]
    seen, cursor = [], None
    while True:
        with db.session() as s:
            rows, cursor = jobs.list_jobs(s, user, status=None, limit=2, cursor=cursor)
        seen += [r.id for r in rows]
        if cursor is None:
            break
    assert seen == ids[::-1]
    with db.session() as s:
        assert jobs.list_jobs(s, user, status="done", limit=10, cursor=None)[0] == []
        with pytest.raises(InvalidInput):
            jobs.list_jobs(s, user, status="nope", limit=10, cursor=None)
        with pytest.raises(InvalidInput):
            jobs.list_jobs(s, user, status=None, limit=10, cursor="garbage!")


@pytest.mark.parametrize(
    ("given", "kept"),
    [("ɔkɔm nsɛm.wav", "ɔkɔm nsɛm.wav"), ("../../etc/passwd", "passwd"), ("C:\\calls\\a.mp3", "a.mp3"),
     ("", "audio"), ("bad\x00name\n.wav", "badname.wav"), ("ɔ" * 300 + ".wav", "ɔ" * 190 + ".wav")],
)  # fmt: skip
def test_file_names_keep_twi_letters_and_lose_folders(given: str, kept: str) -> None:
    assert jobs.clean_filename(given) == kept


def test_options_are_checked() -> None:
    assert jobs.validate_options({"language": "tw", "word_timestamps": "true", "beam_size": "3"}) == {
        "language": "tw", "word_timestamps": True, "beam_size": 3}  # fmt: skip
    for bad in ({"task": "summarise"}, {"beam_size": "0"}, {"word_timestamps": "maybe"}, {"colour": "red"}):
        with pytest.raises(InvalidInput):
            jobs.validate_options(bad)


def test_abandoned_uploads_are_swept_but_used_ones_stay(env) -> None:  # type: ignore[no-untyped-def]
    from twi_asr.backend.db.models import Upload
    from twi_asr.backend.services.janitor import sweep_uploads

    db, blobs, _, user = env
    long_ago = utcnow() - timedelta(hours=3)
    with db.session() as s:
        s.add(
            Upload(
                id="upl_old",
                user_id=user.id,
                filename="a.wav",
                storage_key="uploads/upl_old/a.wav",
                max_bytes=10,
                expires_at=long_ago,
            )
        )
        s.add(
            Upload(
                id="upl_used",
                user_id=user.id,
                filename="b.wav",
                storage_key="uploads/upl_used/b.wav",
                max_bytes=10,
                expires_at=long_ago,
                job_id="job_x",
            )
        )
        s.add(Upload(id="upl_new", user_id=user.id, filename="c.wav", storage_key="uploads/upl_new/c.wav",
                     max_bytes=10, expires_at=utcnow() + timedelta(hours=1)))  # fmt: skip
    for key in ("uploads/upl_old/a.wav", "uploads/upl_used/b.wav", "uploads/upl_new/c.wav"):
        blobs.put_bytes(key, b"x")
    assert sweep_uploads(db, blobs) == 1
    assert blobs.size("uploads/upl_old/a.wav") is None
    assert blobs.size("uploads/upl_used/b.wav") == 1 and blobs.size("uploads/upl_new/c.wav") == 1
    with db.session() as s:
        assert sorted(u.id for u in s.query(Upload).all()) == ["upl_new", "upl_used"]
