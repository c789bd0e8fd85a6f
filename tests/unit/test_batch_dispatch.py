"""Multi-server dispatch with fakes: spreading, failover when a server dies, retries, bad inputs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from twi_asr.batch.dispatch import Endpoint, ServerPool
from twi_asr.errors import AudioError, EnvironmentProblem, UsageError
from twi_asr.storage import InputItem
from twi_asr.types import TranscribeOptions, Transcript


class FakeServer:
    """A server that answers after ``delay_s``; it can die after ``die_after`` requests, refuse
    names containing ``bad``, or fail ``flaky`` times with a transient error while staying healthy."""

    def __init__(self, name: str, *, delay_s: float = 0.005, die_after: int | None = None, flaky: int = 0):
        self.name = name
        self.delay_s = delay_s
        self.die_after = die_after
        self.flaky = flaky
        self.calls: list[str] = []
        self.dead = False
        self.lock = threading.Lock()

    def transcribe(
        self, data: bytes, options: TranscribeOptions | None = None, *, filename: str
    ) -> Transcript:
        with self.lock:
            if self.dead:
                raise EnvironmentProblem(f"cannot reach the twi-asr server at {self.name}")
            self.calls.append(filename)
            if self.die_after is not None and len(self.calls) > self.die_after:
                self.dead = True
                raise EnvironmentProblem(f"cannot reach the twi-asr server at {self.name}")
            if self.flaky:
                self.flaky -= 1
                raise EnvironmentProblem("server error 500 (internal): hiccup")
        time.sleep(self.delay_s)
        if "bad" in filename:
            raise AudioError("not audio")
        return Transcript(text=f"{data.decode()} by {self.name}", language="en", duration=1.5)

    def health(self) -> bool:
        return not self.dead


def items(n: int, bad: tuple[int, ...] = ()) -> list[InputItem]:
    names = [f"{'bad' if i in bad else 'f'}{i}.wav" for i in range(n)]
    return [InputItem(source=f"/src/{name}", relative=name) for name in names]


def read(item: InputItem) -> bytes:
    return item.relative.encode()


def pool(*servers: FakeServer, **kw: Any) -> ServerPool:
    return ServerPool([Endpoint(url=s.name, client=s) for s in servers], **kw)


def test_work_spreads_over_servers_and_every_input_comes_back_once() -> None:
    a, b = FakeServer("a"), FakeServer("b")
    p = pool(a, b, jobs=4)
    out = list(p.run(items(40), TranscribeOptions(), read))
    assert sorted(o.item.relative for o in out) == sorted(f"f{i}.wav" for i in range(40))
    assert all(o.error is None and o.audio_seconds == 1.5 for o in out)
    assert len(a.calls) > 5 and len(b.calls) > 5
    assert p.served() == {"a": len(a.calls), "b": len(b.calls)}
    assert {o.server for o in out} == {"a", "b"}


def test_a_server_that_dies_mid_run_is_skipped_and_its_inputs_go_elsewhere() -> None:
    a, b = FakeServer("a"), FakeServer("b", die_after=3)
    p = pool(a, b, jobs=4, probe_every_s=3600)
    out = list(p.run(items(30), TranscribeOptions(), read))
    assert all(o.error is None for o in out), [o.error for o in out if o.error]
    assert Counter(o.item.relative for o in out) == Counter(f"f{i}.wav" for i in range(30))
    assert b.dead and p.served()["b"] == 3
    assert p.served()["a"] == 27
    assert {o.server for o in out if o.transcript and "by b" in o.transcript.text} == {"b"}


def test_a_dead_server_rejoins_when_it_answers_again() -> None:
    a, b = FakeServer("a", delay_s=0.02), FakeServer("b", die_after=1)
    p = pool(a, b, jobs=2, probe_every_s=0.0)
    run = p.run(items(30), TranscribeOptions(), read)
    first = [next(run) for _ in range(5)]
    assert b.dead
    b.dead, b.die_after = False, None  # restarted
    rest = list(run)
    assert len(first) + len(rest) == 30
    assert p.served()["b"] > 1


def test_a_bad_input_fails_alone_without_retries() -> None:
    a = FakeServer("a")
    out = list(pool(a, jobs=2).run(items(6, bad=(2,)), TranscribeOptions(), read))
    failed = [o for o in out if o.error]
    assert len(failed) == 1 and isinstance(failed[0].error, AudioError)
    assert "/src/bad2.wav" in failed[0].error.message  # the input is named
    assert a.calls.count("bad2.wav") == 1


def test_transient_errors_on_a_healthy_server_are_retried() -> None:
    a = FakeServer("a", flaky=2)
    out = list(pool(a, jobs=1, max_attempts=3).run(items(3), TranscribeOptions(), read))
    assert all(o.error is None for o in out)
    assert len(a.calls) == 5


def test_an_input_that_keeps_failing_is_recorded_after_max_attempts() -> None:
    a = FakeServer("a", flaky=100)
    out = list(pool(a, jobs=1, max_attempts=3).run(items(1), TranscribeOptions(), read))
    assert out[0].error is not None and "failed 3 times" in out[0].error.message
    assert "hiccup" in out[0].error.message


def test_every_server_down_is_an_environment_problem_after_the_grace() -> None:
    a = FakeServer("a", die_after=0)
    p = pool(a, jobs=2, probe_every_s=0.01, all_down_grace_s=0.2)
    with pytest.raises(EnvironmentProblem, match="every server stopped answering"):
        list(p.run(items(4), TranscribeOptions(), read))


def test_a_read_error_is_that_input_only() -> None:
    def flaky_read(item: InputItem) -> bytes:
        if item.relative == "f1.wav":
            raise FileNotFoundError(2, "No such file or directory")
        return read(item)

    out = list(pool(FakeServer("a"), jobs=2).run(items(3), TranscribeOptions(), flaky_read))
    errors = {o.item.relative: o.error for o in out if o.error}
    assert list(errors) == ["f1.wav"] and "cannot read" in errors["f1.wav"].message  # type: ignore[union-attr]


def test_stopping_early_stops_the_workers() -> None:
    a = FakeServer("a", delay_s=0.01)
    run = pool(a, jobs=2).run(items(100), TranscribeOptions(), read)
    next(run)
    run.close()  # what Ctrl-C does to the consumer
    time.sleep(0.1)
    n = len(a.calls)
    time.sleep(0.1)
    assert len(a.calls) == n < 100


def test_no_servers_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        ServerPool([])
