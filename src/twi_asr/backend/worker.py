"""Job workers: threads that claim jobs from the database and send their audio to 8001.

One :class:`JobRunner` per thread. Each loop: claim a job (see
:mod:`.services.execution`), fetch its audio from storage into a temp file,
send it to the ASR pool with the job's request id while a heartbeat renews the
lease, write every transcript format to storage, then finish the job and owe
its webhook in one transaction. When no job is due, webhooks that are due go
out. Faults and what follows:

- every ASR server unreachable, or storage unreachable: the job goes back to
  the queue with a growing delay (at most ``asr_retry_max_s``); it never fails
  for that reason;
- the ASR server rejects the audio (not audio, too long): the job fails with
  the server's stable code;
- this process is killed: the lease runs out and another worker (or this one,
  restarted) takes the job; the fencing token makes sure it ends once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from .db.models import Job, utcnow
from .errors import DatabaseUnavailable, NotFound, StorageUnavailable
from .services import execution, janitor, webhooks
from .services import outputs as outputs_mod
from .services.execution import Claim
from .settings import BackendSettings

__all__ = ["JobRunner", "WorkerPool"]

log = logging.getLogger("twi_asr.backend.worker")


class _Heartbeat(threading.Thread):
    """Renews a claim's lease every third of its length; notes when the job stopped being ours."""

    def __init__(self, db: Any, c: Claim, lease_s: float) -> None:
        super().__init__(name=f"lease-{c.job_id}", daemon=True)
        self.db, self.claim, self.lease_s = db, c, lease_s
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.lease_s / 3):
            try:
                if not execution.renew(self.db, self.claim, self.lease_s):
                    self.lost = True
                    return
            except Exception as exc:  # the database blinked: try again next beat, the lease has room
                log.warning("lease renewal of %s failed: %s", self.claim.job_id, exc)


class JobRunner:
    """Claims and runs jobs, one at a time, for one worker thread."""

    def __init__(
        self,
        settings: BackendSettings,
        db: Any,
        blobs: Any,
        asr: Any,
        metrics: Any = None,
        name: str | None = None,
    ) -> None:
        self.settings, self.db, self.blobs, self.asr, self.metrics = settings, db, blobs, asr, metrics
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    def run_one(self) -> bool:
        """Claim and process one due job; False when none was due."""
        s = self.settings
        c = execution.claim(self.db, self.name, s.job_lease_s, s.job_max_attempts)
        if c is None:
            return False
        try:
            self.process(c)
        except DatabaseUnavailable as exc:  # an outage, not a bug: no traceback; the attempt is given back
            log.warning("job %s: %s; it will be retried", c.job_id, exc.message)
            with contextlib.suppress(Exception):  # still down: the lease hands the job on when it is back
                execution.release(self.db, c, self._delay(1), reason=exc.message)
        except Exception as exc:  # never lose the thread; the lease will hand the job to a retry
            log.exception("job %s: unexpected error, it will be retried: %s", c.job_id, exc)
            with contextlib.suppress(Exception):  # counted as an attempt: a bug must not loop forever
                execution.release(
                    self.db, c, self._delay(1), reason=f"internal error: {exc}", give_back=False
                )
        return True

    def deliver_webhooks(self) -> int:
        """Send the webhooks that are due (called when no job is)."""
        s = self.settings
        return int(
            webhooks.deliver_due(self.db, timeout_s=s.webhook_timeout_s, max_attempts=s.webhook_max_attempts)
        )

    def _delay(self, waits: int) -> float:
        return float(min(self.settings.asr_retry_max_s, 1.0 * 2 ** min(waits, 10)))

    def process(self, c: Claim) -> None:
        """Fetch, transcribe, store, finish: the whole of one job."""
        from .asr import AsrRejected, AsrUnavailable

        with self.db.session() as sess:
            job: Job | None = sess.get(Job, c.job_id)
        if job is None:
            return
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="twi-asr-job-") as tmp:
            path = Path(tmp) / ("input" + PurePosixPath(job.filename).suffix[:10])
            try:
                self._fetch(job, path)
            except NotFound as exc:
                execution.finish_failed(
                    self.db, c, "audio_missing", f"the job's audio is gone from storage: {exc}"
                )
                return
            except StorageUnavailable as exc:
                execution.release(self.db, c, self._delay(job.asr_waits), reason=str(exc))
                return
            t_fetch = time.monotonic()
            beat = _Heartbeat(self.db, c, self.settings.job_lease_s)
            beat.start()
            try:
                result = self.asr.transcribe(
                    path, dict(job.options or {}), filename=job.filename, request_id=job.request_id or job.id
                )
            except AsrUnavailable as exc:
                log.warning("job %s: no ASR server answered (%s); it waits and retries", job.id, exc)
                execution.release(self.db, c, self._delay(job.asr_waits), reason=str(exc))
                return
            except AsrRejected as exc:
                execution.finish_failed(self.db, c, exc.code, exc.message)
                return
            finally:
                beat.stopped.set()
        # The heartbeat may not have beaten since the lease ran out (a stalled worker, a database cut
        # off): ask once more before touching the outputs, which a new owner may already have written.
        if beat.lost or not execution.renew(self.db, c, self.settings.job_lease_s):
            log.info("job %s was cancelled or taken over while it ran; dropping the result", job.id)
            return
        t_asr = time.monotonic()
        try:
            outputs = outputs_mod.store_outputs(
                self.blobs, job.id, job.filename, result.transcript, asr_seconds=result.seconds
            )
        except StorageUnavailable as exc:
            execution.release(self.db, c, self._delay(job.asr_waits), reason=str(exc))
            return
        t_end = time.monotonic()
        queued_s = ((job.started_at or utcnow()) - job.created_at).total_seconds()
        timings = {
            "queued_s": round(max(queued_s, 0.0), 3),
            "fetch_s": round(t_fetch - t0, 3),
            "asr_s": round(t_asr - t_fetch, 3),
            "store_s": round(t_end - t_asr, 3),
            "run_s": round(t_end - t0, 3),
            "attempt": c.attempt,
        }
        done = execution.finish_done(
            self.db, c, outputs_mod.summary(result.transcript, result.server, outputs, timings)
        )
        if done is None:
            with self.db.session() as sess:
                now = sess.get(Job, c.job_id)
                cancelled = now is not None and now.status == "cancelled"
            if cancelled:  # only then are the outputs nobody's; a new owner's are left alone
                log.info("job %s was cancelled while it ran; its outputs are removed", job.id)
                self.blobs.delete_prefix(f"jobs/{job.id}/output/")
            return
        if self.metrics is not None:
            self.metrics.observe_job(done)

    def _fetch(self, job: Job, dest: Path) -> None:
        if job.source_uri.startswith("s3://"):
            from .blobs import read_s3_uri

            read_s3_uri(job.source_uri, dest)
        else:
            self.blobs.download_to(job.source_uri, dest)


class WorkerPool:
    """``n`` worker threads running :class:`JobRunner` loops until :meth:`stop`."""

    def __init__(self, settings: BackendSettings, db: Any, blobs: Any, asr: Any, metrics: Any = None) -> None:
        self.settings, self.db, self.blobs, self.asr, self.metrics = settings, db, blobs, asr, metrics
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, n: int) -> None:
        """Start ``n`` threads (daemons: a killed process loses nothing, the leases run out)."""
        for i in range(n):
            t = threading.Thread(target=self._loop, name=f"twi-asr-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self) -> None:
        runner = JobRunner(self.settings, self.db, self.blobs, self.asr, self.metrics)
        last_chores = 0.0
        last_sweep = time.monotonic() - 290.0  # the first sweep soon after start
        while not self._stop.is_set():
            try:
                ran = runner.run_one()
                if not ran or time.monotonic() - last_chores > 1.0:  # webhooks go out under load too
                    runner.deliver_webhooks()
                    execution.reap_sync(self.db)
                    last_chores = time.monotonic()
                if time.monotonic() - last_sweep > 300.0:
                    janitor.sweep_uploads(self.db, self.blobs)
                    last_sweep = time.monotonic()
                if ran:
                    continue
            except Exception as exc:  # database down: keep trying, slowly
                log.warning("worker loop: %s", exc)
                self._stop.wait(min(5.0, self.settings.poll_interval_s * 4))
            self._wake.wait(self.settings.poll_interval_s)  # a job submitted here wakes us at once
            self._wake.clear()

    def wake(self) -> None:
        """A job was just queued in this process: idle threads look now, not at their next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every thread to stop after its current job, and wait up to ``timeout_s``."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
