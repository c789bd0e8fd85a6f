"""The batcher's scheduling with a fake engine: short work first, bulk turns, a kept lane, ageing,
dropped pieces and in-order updates. The fake's text is the clip's sample count."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from twi_asr.server import batching
from twi_asr.server.batching import Batcher
from twi_asr.server.metrics import Metrics
from twi_asr.types import TranscribeOptions, Transcript

OPTS = TranscribeOptions()


class Engine:
    """Records each call's clip lengths and its thread; sleeps ``per_clip`` seconds per clip."""

    engine, device, model_name, batch_size = "fake", "cpu", "fake", 8

    def __init__(self, per_clip: float = 0.0, gate: threading.Event | None = None) -> None:
        self.per_clip = per_clip
        self.gate = gate
        self.calls: list[list[int]] = []
        self.lock = threading.Lock()

    def transcribe(self, audios: Sequence[np.ndarray], options: Any = None) -> list[Transcript]:
        with self.lock:
            self.calls.append([len(a) for a in audios])
        if self.gate is not None:
            assert self.gate.wait(10)
        time.sleep(self.per_clip * len(audios))
        return [Transcript(text=str(len(a)), language="en", duration=len(a) / 16000) for a in audios]


def clip(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


def make(engine: Engine, **kw: Any) -> Batcher:
    args: dict[str, Any] = {
        "max_batch_size": 4,
        "max_wait_s": 0.01,
        "max_queue": 64,
        "metrics": Metrics.create(),
    }
    args.update(kw)
    return Batcher(engine, **args)


def test_pieces_come_back_in_order_as_each_finishes() -> None:
    engine = Engine(per_clip=0.02)

    async def main() -> list[tuple[int, str]]:
        b = make(engine, lanes=1)
        b.start()
        try:
            job = b.submit_job([clip(1000 + i) for i in range(6)], OPTS, bulk=True)
            seen = [(i, t.text) async for i, t in job.updates()]
            assert [t.text for t in await job.result()] == [str(1000 + i) for i in range(6)]
            return seen
        finally:
            await b.drain(5)

    assert run(main()) == [(i, str(1000 + i)) for i in range(6)]
    assert engine.calls[0] == [1000]  # the first bulk batch is one piece: early first words
    assert engine.calls[1] == [1001]  # one lane: bulk batches of max_batch_size // 4


def test_a_short_request_overtakes_queued_bulk_pieces() -> None:
    engine = Engine(per_clip=0.05)

    async def main() -> None:
        b = make(engine, lanes=1)
        b.start()
        try:
            job = b.submit_job([clip(50_000 + i) for i in range(10)], OPTS, bulk=True)
            await asyncio.sleep(0.02)
            assert (await b.submit(clip(7), OPTS)).text == "7"
            assert job.pending > 0  # answered while the long job still had work queued
            await job.result()
        finally:
            await b.drain(5)

    run(main())
    position = next(i for i, call in enumerate(engine.calls) if call == [7])
    assert position <= 2


def test_two_bulk_jobs_take_turns() -> None:
    engine = Engine()

    async def main() -> None:
        b = make(engine, lanes=1, max_batch_size=4)
        b.start()
        try:
            a = b.submit_job([clip(100 + i) for i in range(4)], OPTS, bulk=True)
            c = b.submit_job([clip(200 + i) for i in range(4)], TranscribeOptions(language="fr"), bulk=True)
            await asyncio.gather(a.result(), c.result())
        finally:
            await b.drain(5)

    run(main())
    owners = [call[0] // 100 for call in engine.calls]
    assert owners[:4] == [1, 2, 1, 2], engine.calls


def test_with_two_lanes_one_is_kept_for_short_work() -> None:
    gate = threading.Event()
    engine = Engine(gate=gate)

    async def main() -> None:
        b = make(engine, lanes=2)
        b.start()
        try:
            job = b.submit_job([clip(90_000 + i) for i in range(8)], OPTS, bulk=True)
            await asyncio.sleep(0.1)
            assert engine.calls == [[90_000]]  # one bulk batch runs; the free lane does not take more
            short = asyncio.ensure_future(b.submit(clip(5), OPTS))
            await asyncio.sleep(0.1)
            assert engine.calls == [[90_000], [5]]  # the kept lane took the short one at once
            gate.set()
            await asyncio.gather(job.result(), short)
        finally:
            gate.set()
            await b.drain(5)

    run(main())


def test_a_long_job_ages_past_a_stream_of_short_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "BULK_AGEING_S", 0.2)
    engine = Engine(per_clip=0.02)

    async def main() -> float:
        b = make(engine, lanes=1, max_wait_s=0.0)
        b.start()
        stop = asyncio.Event()

        async def flood() -> None:
            while not stop.is_set():
                await asyncio.gather(*(b.submit(clip(3), OPTS) for _ in range(3)))

        try:
            flooding = [asyncio.ensure_future(flood()) for _ in range(3)]
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            await b.submit_job([clip(40_000), clip(40_001)], OPTS, bulk=True).result()
            stop.set()
            await asyncio.gather(*flooding)
            return time.perf_counter() - t0
        finally:
            await b.drain(5)

    assert run(main()) < 3.0  # without ageing the short flood would hold it back for ever


def test_dropping_a_job_skips_its_queued_pieces_and_counts_them() -> None:
    gate = threading.Event()
    engine = Engine(gate=gate)
    metrics = Metrics.create()

    async def main() -> None:
        b = make(engine, lanes=1, metrics=metrics)
        b.start()
        try:
            job = b.submit_job([clip(60_000 + i) for i in range(9)], OPTS, bulk=True)
            await asyncio.sleep(0.05)  # the first piece is in the engine
            b.drop(job)
            gate.set()
            await asyncio.sleep(0.1)
            assert b.depth == 0
        finally:
            gate.set()
            await b.drain(5)

    run(main())
    assert engine.calls == [[60_000]]
    assert metrics.registry.get_sample_value("twi_asr_dropped_pieces_total") == 8


def test_an_upload_without_a_duration_reserves_what_its_size_can_hold() -> None:
    from twi_asr.server.settings import ServerSettings
    from twi_asr.server.transcription import _at_most

    settings = ServerSettings(max_audio_s=10800)
    assert _at_most(1100, settings) == pytest.approx(2.2)  # 1.1 kB of "audio": at most 2.2 s
    assert _at_most(50_000_000, settings) == 10800  # never more than the per-request limit
    assert _at_most(None, settings) == 10800


def test_a_full_batch_is_split_over_the_idle_lanes() -> None:
    gate = threading.Event()
    engine = Engine(gate=gate)

    async def main() -> None:
        b = make(engine, lanes=2, max_batch_size=8, max_wait_s=0.05)
        b.start()
        try:
            jobs = [asyncio.ensure_future(b.submit(clip(100 + i), OPTS)) for i in range(8)]
            await asyncio.sleep(0.2)
            assert sorted(len(c) for c in engine.calls) == [4, 4], engine.calls  # both lanes busy at once
            gate.set()
            texts = [t.text for t in await asyncio.gather(*jobs)]
            assert texts == [str(100 + i) for i in range(8)]
        finally:
            gate.set()
            await b.drain(5)

    run(main())


def test_one_lane_still_takes_the_whole_batch() -> None:
    engine = Engine()

    async def main() -> None:
        b = make(engine, lanes=1, max_batch_size=8, max_wait_s=0.05)
        b.start()
        try:
            await asyncio.gather(*(b.submit(clip(100 + i), OPTS) for i in range(8)))
        finally:
            await b.drain(5)

    run(main())
    assert [len(c) for c in engine.calls] == [8], engine.calls


def test_a_lone_request_on_a_quiet_server_does_not_wait_for_company() -> None:
    engine = Engine()

    async def main() -> tuple[list[float], float]:
        b = make(engine, lanes=1, max_batch_size=8, max_wait_s=0.3)
        b.start()
        try:
            waits = []
            for i in range(batching.ARRIVAL_GAPS + 2):  # one at a time, 0.35 s apart
                await asyncio.sleep(0.35)
                t0 = time.perf_counter()
                await b.submit(clip(100 + i), OPTS)
                waits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()  # then a burst: it waits for company again once gaps are short
            await asyncio.gather(*(b.submit(clip(200 + i), OPTS) for i in range(8)))
            return waits, time.perf_counter() - t0
        finally:
            await b.drain(5)

    waits, _ = run(main())
    assert min(waits[:2]) >= 0.28, waits  # no history yet: the full wait
    assert max(waits[-2:]) < 0.2, waits  # gaps of 0.35 s > max_wait: no companion is coming (0 vs 0.3 s)
    assert [len(c) for c in engine.calls][-1] >= 2, engine.calls  # the burst was still batched
