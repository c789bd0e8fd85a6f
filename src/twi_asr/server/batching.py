"""Gather work from concurrent requests into engine batches, fairly, on a few engine lanes.

A request is a :class:`Job` of one or more *pieces* (a long upload is cut on silence into
pieces of at most ~28 s; a short one is a single piece). Jobs wait in arrival order. Each
engine *lane* (a worker thread; the CTranslate2 engine runs one model replica per lane) asks
the scheduler for its next batch:

* **Short jobs first.** Pieces of short requests (one piece, at most 30 s) are taken in
  arrival order, grouped by decoding options (only identical options share a batch), after
  waiting up to ``max_wait`` for company, but only while requests arrive closer together than
  that (the median of the last few gaps): a lone request on a quiet server goes at once.
* **Bulk jobs take turns.** Pieces of long requests are handed out round-robin, one job per
  batch, so two long files advance together and one long file never blocks a queue of
  others. A job's first bulk batch is a single piece, so a streaming client sees its first
  words early.
* **Long jobs age.** A bulk job that has had no batch for :data:`BULK_AGEING_S` goes before
  short work, so a steady stream of short requests cannot starve a long upload.
* **A lane stays free for short work.** With several lanes, bulk batches run on at most
  ``bulk_lanes`` of them (default: all but one), so a 3 s request arriving during a
  20-minute transcription does not wait for it. With one lane, bulk batches are kept small
  (a quarter of ``max_batch_size``) so a short request waits at most one of them.

When a client goes away, :meth:`Job.cancel` drops its pieces that no lane has taken yet
(counted in ``twi_asr_dropped_pieces_total``). Each piece's transcript is delivered in
order as soon as it is done (:meth:`Job.updates`), which is what streaming responses read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..engines.base import Transcriber
from ..errors import TwiAsrError
from ..types import TranscribeOptions, Transcript
from .metrics import Metrics

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
ARRIVAL_GAPS = 5
"""How many recent gaps between short requests decide whether waiting for company pays."""
BULK_AGEING_S = 5.0
"""A bulk job left without a batch this long is served before short work (no starvation)."""


class QueueFullError(TwiAsrError):
    """The server holds as much work as it may: the client should retry later."""

    code = "queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Job:
    """One request's pieces, their transcripts as they finish, and the final outcome."""

    def __init__(self, pieces: Sequence[np.ndarray], options: TranscribeOptions, *, bulk: bool) -> None:
        loop = asyncio.get_running_loop()
        self.pieces = list(pieces)
        self.options = options
        self.bulk = bulk
        self.results: list[Transcript | None] = [None] * len(self.pieces)
        self.next = 0
        """Index of the next piece no lane has taken yet."""
        self.batches = 0
        self.served = time.perf_counter()
        """When the job arrived or its last batch ended: bulk jobs age from here."""
        self.cancelled = False
        self.future: asyncio.Future[list[Transcript]] = loop.create_future()
        self._updates: asyncio.Queue[tuple[int, Transcript] | BaseException] = asyncio.Queue()
        self._emitted = 0
        self.enqueued = time.perf_counter()
        self.audio_seconds = sum(len(p) for p in self.pieces) / SAMPLE_RATE

    @property
    def pending(self) -> int:
        """Pieces still waiting for a lane (0 once cancelled or failed)."""
        return 0 if self.future.done() else len(self.pieces) - self.next

    def cancel(self) -> int:
        """Drop the pieces no lane has taken; return how many were dropped."""
        dropped = self.pending
        self.cancelled = True
        self.next = len(self.pieces)
        if not self.future.done():
            self.future.cancel()
        return dropped

    async def result(self) -> list[Transcript]:
        """Every piece's transcript, in order (raises the engine's error if a piece failed)."""
        return await asyncio.shield(self.future)

    async def updates(self) -> AsyncIterator[tuple[int, Transcript]]:
        """``(piece index, transcript)`` in piece order, each as soon as it and those before it are done."""
        for _ in range(len(self.pieces)):
            item = await self._updates.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    # -------------------------------------------------------------- internals
    def _deliver(self, index: int, outcome: Transcript | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.next = len(self.pieces)
            self.future.set_exception(outcome)
            self._updates.put_nowait(outcome)
            return
        self.results[index] = outcome
        while self._emitted < len(self.results) and (done := self.results[self._emitted]) is not None:
            self._updates.put_nowait((self._emitted, done))
            self._emitted += 1
        if self._emitted == len(self.results):
            self.future.set_result([r for r in self.results if r is not None])


_Work = list[tuple[Job, int]]


class Batcher:
    """Owns the engine: every transcription goes through :meth:`submit_job` (or :meth:`submit`)."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        metrics: Metrics,
        lanes: int = 1,
        bulk_lanes: int | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.lanes = max(1, lanes)
        self.bulk_lanes = max(1, min(self.lanes, bulk_lanes or self.lanes - 1 or 1))
        self.bulk_batch_size = max_batch_size if self.lanes > 1 else max(1, max_batch_size // 4)
        # max_batch_size bounds the short clips in the engine at once, over all lanes: on two
        # single-threaded CPU lanes 2 x 4 beat 2 x 8 at 16 clients (52.8 vs 46.1 audio s/s,
        # bench/server_bento.py), as smaller batches pad less and finish sooner.
        self.lane_batch_size = max(1, -(-max_batch_size // self.lanes))
        self._jobs: list[Job] = []  # jobs with pieces not yet taken, in arrival order
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.lanes, thread_name_prefix="twi-asr-engine")
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0  # batches in the engine
        self._bulk_running = 0
        self._turn = 0  # round-robin position among bulk jobs
        self._avg_rtf = 0.05  # engine seconds per audio second, smoothed
        self._last_arrival: float | None = None
        self._gaps: deque[float] = deque(maxlen=ARRIVAL_GAPS)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start one scheduler task per lane on the running event loop."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lane(), name=f"twi-asr-lane-{i}") for i in range(self.lanes)]

    async def drain(self, timeout: float) -> None:
        """Let queued and running work finish (graceful shutdown), then stop."""
        deadline = time.monotonic() + timeout
        while (self._waiting_jobs() or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for job in self._jobs:  # past the grace period: answer, never leave a client hanging
            job._deliver(0, QueueFullError("the server is shutting down; retry", retry_after=1))
        self._jobs.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --------------------------------------------------------------- public
    @property
    def depth(self) -> int:
        """Requests waiting for a lane, plus batches running."""
        return len(self._waiting_jobs()) + self._running

    @property
    def saturated(self) -> bool:
        """True when a new request would be refused."""
        return len(self._waiting_jobs()) >= self.max_queue

    @property
    def queued_audio_seconds(self) -> float:
        """Audio seconds of the pieces no lane has taken yet."""
        return sum(len(p) for j in self._jobs for p in j.pieces[j.next :]) / SAMPLE_RATE

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queued audio at the recent engine speed."""
        return max(1, round(self.queued_audio_seconds * self._avg_rtf / self.lanes))

    def submit_job(self, pieces: Sequence[np.ndarray], options: TranscribeOptions, *, bulk: bool) -> Job:
        """Queue a request's pieces; raises :class:`QueueFullError` when ``max_queue`` jobs wait."""
        if not pieces:
            raise ValueError("a job needs at least one piece")
        if self.saturated:
            raise QueueFullError(
                f"the server is busy ({self.max_queue} requests queued); retry later",
                retry_after=self.retry_after(),
            )
        job = Job(pieces, options, bulk=bulk)
        if not bulk:
            if self._last_arrival is not None:
                self._gaps.append(job.enqueued - self._last_arrival)
            self._last_arrival = job.enqueued
        self._jobs.append(job)
        self._wake.set()
        self.metrics.queue_depth.set(self.depth)
        return job

    async def submit(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """Queue one short clip and wait for its transcript (dropped if the caller is cancelled)."""
        job = self.submit_job([audio], options, bulk=False)
        try:
            return (await job.result())[0]
        except asyncio.CancelledError:
            self.drop(job)
            raise

    def drop(self, job: Job) -> None:
        """Cancel ``job`` because nobody waits for it any more; its untaken pieces are not decoded."""
        if job.future.done() and not job.cancelled:
            return
        dropped = job.cancel()
        if dropped:
            self.metrics.dropped_pieces.inc(dropped)
            log.info("client gone: dropped %d queued piece(s)", dropped)
        self._prune()
        self.metrics.queue_depth.set(self.depth)

    # ------------------------------------------------------------ scheduling
    def _waiting_jobs(self) -> list[Job]:
        return [j for j in self._jobs if j.pending]

    def _prune(self) -> None:
        self._jobs = [j for j in self._jobs if j.pending]

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            work, bulk = await self._take()
            self._running += 1
            self._bulk_running += bulk
            try:
                await self._run(loop, work)
            finally:
                for job, _ in work:  # a job ages from the end of its last batch, not its start
                    job.served = time.perf_counter()
                self._running -= 1
                self._bulk_running -= bulk
                self.metrics.queue_depth.set(self.depth)
                self._wake.set()

    async def _take(self) -> tuple[_Work, bool]:
        """Wait for the next batch this lane may run: short work first, then a bulk job's turn."""
        while True:
            self._wake.clear()
            self._prune()
            short = [j for j in self._jobs if not j.bulk]
            bulk = [j for j in self._jobs if j.bulk]
            bulk_free = self._bulk_running < self.bulk_lanes
            aged = [j for j in bulk if time.perf_counter() - j.served > BULK_AGEING_S]
            if aged and bulk_free:
                return self._claim_bulk(aged[0], bulk), True
            if short:
                first = short[0]
                group = [j for j in short if j.options == first.options]
                remaining = first.enqueued + self._wait_s() - time.perf_counter()
                pending = sum(j.pending for j in group)
                if pending >= self.lane_batch_size or remaining <= 0:
                    return self._claim(group, self._share(pending)), False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
                continue
            if bulk and bulk_free:
                job = bulk[self._turn % len(bulk)]
                self._turn += 1
                return self._claim_bulk(job, bulk), True
            await self._wake.wait()

    def _wait_s(self) -> float:
        """How long a batch waits for company: ``max_wait_s`` while requests come in close together.

        With the median of the last gaps between short requests over ``max_wait_s``, no companion
        is likely to come in time, and waiting would only add to the latency (one client in a
        loop: 20 ms on a 150 ms request). BentoML's dispatcher learns the same from its timings.
        """
        if len(self._gaps) < ARRIVAL_GAPS:
            return self.max_wait_s  # no history yet: wait, as a burst would want
        median = sorted(self._gaps)[len(self._gaps) // 2]
        return self.max_wait_s if median <= self.max_wait_s else 0.0

    def _share(self, pending: int) -> int:
        """This lane's part of ``pending`` short pieces: split evenly over the lanes now idle.

        Eight waiting requests on two single-threaded lanes run as two batches of four at once,
        not one batch of eight while the other core waits (bench/server_bento.py: 25.7 audio s/s
        at 8 clients before, against 38.5 at 16, where two full batches ran).
        """
        idle = max(1, self.lanes - self._running)
        return max(1, min(self.lane_batch_size, -(-pending // idle)))

    def _claim_bulk(self, job: Job, bulk: list[Job]) -> _Work:
        """A bulk batch led by ``job``: one piece the first time (early first words), then a batch."""
        size = 1 if job.batches == 0 else self.bulk_batch_size
        return self._claim([job, *(j for j in bulk if j is not job and j.options == job.options)], size)

    def _claim(self, jobs: list[Job], size: int) -> _Work:
        """Take up to ``size`` pieces from ``jobs``, in order."""
        work: _Work = []
        for job in jobs:
            if len(work) < size and job.pending:
                job.batches += 1
                job.served = time.perf_counter()
            while len(work) < size and job.pending:
                work.append((job, job.next))
                job.next += 1
        self._prune()
        return work

    async def _run(self, loop: asyncio.AbstractEventLoop, work: _Work) -> None:
        """One engine call for ``work``; a failed batch is retried piece by piece."""
        work = [(job, i) for job, i in work if not job.future.done()]
        if not work:
            return
        options = work[0][0].options
        audios = [job.pieces[i] for job, i in work]
        self.metrics.batch_size.observe(len(work))
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.transcriber.transcribe, audios, options)
        except Exception as exc:  # one bad clip must not fail its neighbours
            if len(work) == 1:
                log.warning("engine failed on one clip: %s", exc, exc_info=True)
                work[0][0]._deliver(work[0][1], exc)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(work), exc)
            for item in work:
                await self._run(loop, [item])
            return
        elapsed = time.perf_counter() - t0
        audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
        if audio_s > 0:
            self.metrics.real_time_factor.observe(elapsed / audio_s)
            self._avg_rtf = 0.8 * self._avg_rtf + 0.2 * (elapsed / audio_s)
        for (job, i), result in zip(work, results, strict=True):
            job._deliver(i, result)
