"""Send inputs to one or more twi-asr servers, ``jobs`` requests in flight, with failover.

Each input's original bytes are uploaded (the server decodes them, so this
process stays light and a bad file is judged by the same decoder as a good
one). Worker threads take inputs from one queue and send each to the live
server with the fewest requests in flight, so the load spreads by speed.

What fails, and what happens:

- A dropped connection or a 503 with ``Retry-After``: retried on the same
  server by :class:`~twi_asr.client.TwiAsrClient` with backoff (``retries``).
- Still failing: the server's ``/health`` is asked. No answer: the server is
  marked down, the input goes back in the queue for the others, and the
  server is probed again every ``probe_every_s`` (a restarted server rejoins).
  An answer: the input is retried, on whichever server is freest, up to
  ``max_attempts`` times, then recorded as failed with the last reason.
- The input itself is bad (415/422/413: not audio, empty, too long): failed
  at once, no retry; the run goes on.
- Every server down for ``all_down_grace_s``: :class:`EnvironmentProblem`
  (exit 3); what finished is already recorded, so a rerun resumes.

Threads are daemons: on Ctrl-C the caller stops reading and exits without
waiting for uploads in flight.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..errors import EnvironmentProblem, InputError, TwiAsrError, UsageError
from ..storage import InputItem
from ..types import TranscribeOptions, Transcript

__all__ = ["Endpoint", "Outcome", "ServerPool"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """One finished input: its transcript or its error, where it ran and how long it took."""

    item: InputItem
    transcript: Transcript | None
    error: TwiAsrError | None
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    server: str | None = None


@dataclass
class Endpoint:
    """One server and what we know of it."""

    url: str
    client: Any  # TwiAsrClient, or a fake with transcribe() and health()
    alive: bool = True
    in_flight: int = 0
    served: int = 0
    failures: int = 0
    last_probe: float = 0.0
    down_since: float | None = None


@dataclass
class _Task:
    item: InputItem
    attempts: int = 0
    failovers: int = 0
    last_error: TwiAsrError | None = None
    data: bytes | None = field(default=None, repr=False)


class _AllDown(Exception):
    pass


class ServerPool:
    """Servers to spread work over; :meth:`run` yields an :class:`Outcome` per input as each finishes."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        jobs: int = 4,
        max_attempts: int = 3,
        probe_every_s: float = 5.0,
        all_down_grace_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise UsageError("no server to send to")
        self.endpoints = list(endpoints)
        self.jobs = max(1, jobs)
        self.max_attempts = max(1, max_attempts)
        self.probe_every_s = probe_every_s
        self.all_down_grace_s = all_down_grace_s
        self.clock = clock
        self._lock = threading.Condition()
        self._stop = threading.Event()

    @classmethod
    def connect(
        cls,
        urls: Sequence[str],
        *,
        api_key: str | None = None,
        jobs: int = 4,
        retries: int = 2,
        timeout_s: float = 600.0,
        **kwargs: Any,
    ) -> ServerPool:
        """Clients for ``urls``, checked now: unreachable ones start down; none reachable is exit 3.

        ``GET /v1/models`` (which needs the API key) is asked of each live
        server, so a wrong key fails here, once, not per file.
        """
        from ..client import TwiAsrClient

        endpoints = []
        for url in dict.fromkeys(urls):
            client = TwiAsrClient(url, api_key=api_key, retries=retries, backoff_s=0.5, timeout=timeout_s)
            ep = Endpoint(url=client.base_url, client=client)
            if client.health():
                client.models()  # raises EnvironmentProblem for a refused key
            else:
                ep.alive, ep.down_since = False, time.monotonic()
                log.warning("server %s does not answer; it will be retried during the run", url)
            endpoints.append(ep)
        if not any(ep.alive for ep in endpoints):
            shown = ", ".join(urls)
            raise EnvironmentProblem(f"no twi-asr server answers at {shown} (is `twi-asr serve` running?)")
        return cls(endpoints, jobs=jobs, **kwargs)

    # ------------------------------------------------------------ choosing a server
    def _probe_down(self) -> None:
        """Ask ``/health`` of down servers whose probe is due (outside the lock: it is a network call)."""
        now = self.clock()
        with self._lock:
            due = [ep for ep in self.endpoints if not ep.alive and now - ep.last_probe >= self.probe_every_s]
            for ep in due:
                ep.last_probe = now
        for ep in due:
            if ep.client.health():
                with self._lock:
                    ep.alive, ep.down_since = True, None
                    self._lock.notify_all()
                log.warning("server %s answers again; sending to it", ep.url)

    def _acquire(self) -> Endpoint:
        """The live server with the fewest requests in flight; waits while all are down, up to the grace."""
        while True:
            self._probe_down()
            with self._lock:
                live = [ep for ep in self.endpoints if ep.alive]
                if live:
                    ep = min(live, key=lambda e: (e.in_flight, e.served))
                    ep.in_flight += 1
                    return ep
                since = min(ep.down_since or self.clock() for ep in self.endpoints)
                if self.clock() - since > self.all_down_grace_s:
                    raise _AllDown()
                self._lock.wait(timeout=min(1.0, self.probe_every_s))
            if self._stop.is_set():
                raise _AllDown()

    def _release(self, ep: Endpoint, *, ok: bool) -> None:
        with self._lock:
            ep.in_flight -= 1
            if ok:
                ep.served += 1
            self._lock.notify_all()

    def _mark_down(self, ep: Endpoint) -> None:
        with self._lock:
            if ep.alive:
                ep.alive, ep.down_since, ep.last_probe = False, self.clock(), self.clock()
                log.warning("server %s stopped answering; its inputs go to the others", ep.url)

    # ------------------------------------------------------------ the work
    def _one(self, task: _Task, options: TranscribeOptions, read: Callable[[InputItem], bytes]) -> Any:
        """Try ``task`` once; an :class:`Outcome` when it is settled, else the task to requeue."""
        item = task.item
        if task.data is None:
            try:
                task.data = read(item)
            except TwiAsrError as exc:
                return Outcome(item, None, exc)
            except OSError as exc:
                return Outcome(item, None, InputError(f"{item.source}: cannot read: {exc.strerror or exc}"))
        ep = self._acquire()
        t0 = time.perf_counter()
        try:
            transcript = ep.client.transcribe(task.data, options, filename=PurePosixPath(item.relative).name)
        except (UsageError, InputError) as exc:  # the input (or the options) is the problem
            self._release(ep, ok=False)
            return Outcome(
                item, None, _named(exc, item), wall_seconds=time.perf_counter() - t0, server=ep.url
            )
        except Exception as exc:  # transient or server-side (or an httpx error the client leaves raw)
            self._release(ep, ok=False)
            ep.failures += 1
            if not isinstance(exc, TwiAsrError):
                exc = EnvironmentProblem(f"{ep.url}: {type(exc).__name__}: {exc}")
            task.last_error = exc
            if not ep.client.health():
                self._mark_down(ep)
                task.failovers += 1
                return task
            task.attempts += 1
            if task.attempts >= self.max_attempts:
                error = InputError(f"{item.source}: failed {task.attempts} times; last: {exc.message}")
                return Outcome(item, None, error, wall_seconds=time.perf_counter() - t0, server=ep.url)
            return task
        wall = time.perf_counter() - t0
        self._release(ep, ok=True)
        task.data = None
        return Outcome(item, transcript, None, transcript.duration, wall, ep.url)

    def run(
        self,
        items: Sequence[InputItem],
        options: TranscribeOptions,
        read: Callable[[InputItem], bytes],
        *,
        poll_s: float = 0.2,
    ) -> Iterator[Outcome]:
        """Yield one :class:`Outcome` per item, in the order they finish.

        Raises :class:`EnvironmentProblem` when every server stayed down for
        the grace period; stops the workers when the caller stops iterating.
        """
        todo: queue.Queue[_Task | None] = queue.Queue()
        done: queue.Queue[Outcome | BaseException] = queue.Queue()
        for item in items:
            todo.put(_Task(item))
        remaining = len(items)
        n_workers = min(self.jobs, max(1, remaining))

        def worker() -> None:
            while not self._stop.is_set():
                try:
                    task = todo.get(timeout=poll_s)
                except queue.Empty:
                    continue
                if task is None:
                    return
                try:
                    result = self._one(task, options, read)
                except _AllDown:
                    done.put(EnvironmentProblem(_all_down_message(self.endpoints, task)))
                    return
                except BaseException as exc:  # a bug must reach the caller, not die in a thread
                    done.put(exc)
                    return
                if isinstance(result, _Task):
                    todo.put(result)
                else:
                    done.put(result)

        threads = [
            threading.Thread(target=worker, name=f"twi-asr-batch-{i}", daemon=True) for i in range(n_workers)
        ]
        for t in threads:
            t.start()
        try:
            while remaining:
                try:
                    got = done.get(timeout=poll_s)
                except queue.Empty:
                    continue
                if isinstance(got, BaseException):
                    raise got
                remaining -= 1
                yield got
        finally:
            self._stop.set()
            for _ in threads:
                todo.put(None)

    def served(self) -> dict[str, int]:
        """Inputs each server transcribed."""
        return {ep.url: ep.served for ep in self.endpoints}


def _named(exc: TwiAsrError, item: InputItem) -> TwiAsrError:
    """The same kind of error, with the input's name in front when the server did not say it."""
    if item.source in exc.message:
        return exc
    named = type(exc)(f"{item.source}: {exc.message}") if type(exc).__init__ is TwiAsrError.__init__ else exc
    return named


def _all_down_message(endpoints: Sequence[Endpoint], task: _Task) -> str:
    urls = ", ".join(ep.url for ep in endpoints)
    last = f" (last error: {task.last_error.message})" if task.last_error else ""
    return f"every server stopped answering ({urls}){last}; rerun the same command to resume"
