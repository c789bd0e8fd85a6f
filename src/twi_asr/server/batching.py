"""Gather concurrent requests into engine batches, on one worker thread.

Requests wait in a bounded asyncio queue. The collector takes the first,
waits up to ``max_wait`` for more (up to ``max_batch_size``), groups them by
decoding options (only identical options share a batch) and runs each group
through the engine in a single worker thread, off the event loop, so
``/health`` answers while a batch runs. A full queue refuses at once
(:class:`QueueFullError` -> 503 + Retry-After) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..engines.base import Transcriber
from ..errors import TwiAsrError
from ..types import TranscribeOptions, Transcript
from .metrics import Metrics

log = logging.getLogger(__name__)


class QueueFullError(TwiAsrError):
    """The engine's queue is full: the client should retry later."""

    code = "queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    audio: np.ndarray
    options: TranscribeOptions
    future: asyncio.Future[Transcript]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Owns the engine: every transcription goes through :meth:`submit`."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        metrics: Metrics,
    ) -> None:
        self.transcriber = transcriber
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twi-asr-engine")
        self._task: asyncio.Task[None] | None = None
        self._busy = 0  # jobs taken from the queue but not finished
        self._avg_batch_s = 1.0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="twi-asr-batcher")

    async def drain(self, timeout: float) -> None:
        """Let queued and running jobs finish (graceful shutdown), then stop."""
        deadline = time.monotonic() + timeout
        while (self._queue.qsize() or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --------------------------------------------------------------- public
    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return self._queue.qsize() + self._busy

    @property
    def saturated(self) -> bool:
        """True when a new request would be refused."""
        return self._queue.full()

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one queue's worth of batches."""
        batches = max(1, self._queue.qsize() // max(1, self.max_batch_size))
        return max(1, round(batches * self._avg_batch_s))

    async def submit(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """Queue one clip and wait for its transcript."""
        job = _Job(audio=audio, options=options, future=asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(
                f"the server is busy ({self.max_queue} requests queued); retry later",
                retry_after=self.retry_after(),
            ) from None
        self.metrics.queue_depth.set(self.depth)
        return await job.future

    # ------------------------------------------------------------ internals
    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            self._busy += 1  # a job is busy from the moment it leaves the queue (drain waits for it)
            try:
                deadline = loop.time() + self.max_wait_s
                while len(batch) < self.max_batch_size:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                    except asyncio.TimeoutError:
                        break
                    self._busy += 1
                # requests whose client gave up (timeout, disconnect) are not worth engine time
                for group in _group_by_options([j for j in batch if not j.future.done()]):
                    await self._run(group)
            except asyncio.CancelledError:
                for job in batch:  # shutting down past the grace period: answer, never leave hanging
                    _settle(job, QueueFullError("the server is shutting down; retry", retry_after=1))
                raise
            finally:
                self._busy -= len(batch)
                self.metrics.queue_depth.set(self.depth)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        options = jobs[0].options
        self.metrics.batch_size.observe(len(jobs))
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self.transcriber.transcribe, [j.audio for j in jobs], options
            )
        except Exception as exc:  # one bad clip must not fail its neighbours: retry one by one
            if len(jobs) == 1:
                log.warning("engine failed on one clip: %s", exc, exc_info=True)
                _settle(jobs[0], exc)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(jobs), exc)
            for job in jobs:
                await self._run([job])
            return
        elapsed = time.perf_counter() - t0
        self._avg_batch_s = 0.8 * self._avg_batch_s + 0.2 * elapsed
        audio_s = sum(len(j.audio) for j in jobs) / 16000.0
        if audio_s > 0:
            self.metrics.real_time_factor.observe(elapsed / audio_s)
        for job, result in zip(jobs, results, strict=True):
            _settle(job, result)


def _settle(job: _Job, outcome: Transcript | BaseException) -> None:
    if job.future.done():  # the client is gone
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)


def _group_by_options(jobs: list[_Job]) -> list[list[_Job]]:
    groups: dict[TranscribeOptions, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.options, []).append(job)
    return list(groups.values())
