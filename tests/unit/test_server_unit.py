"""Unit tests of the HTTP server without a model: the batcher and the FastAPI app over a fake engine.

The fake's transcript text is the clip's sample count, so every response can be
matched back to the upload it came from. The batcher is driven with ``asyncio.run``;
the app through ``fastapi.testclient.TestClient`` (sequential requests, lifespan
included) or ``httpx.ASGITransport`` inside the app's lifespan (concurrent requests).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from twi_asr.errors import EnvironmentProblem
from twi_asr.languages import resolve_language
from twi_asr.server.app import ServerState, create_app
from twi_asr.server.batching import Batcher, QueueFullError
from twi_asr.server.metrics import Metrics
from twi_asr.server.settings import ServerSettings
from twi_asr.types import Segment, TranscribeOptions, Transcript, Word

SR = 16000
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
SRT_CUE = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$", re.S)
VTT_TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}$")


def text_for(n_samples: int) -> str:
    return f"{n_samples} samples"


class FakeTranscriber:
    """Follows the Transcriber protocol; records every batch; can block, sleep or fail."""

    engine = "fake"
    device = "cpu"
    model_name = "fake-model"
    batch_size = 8

    def __init__(
        self,
        *,
        delay: float = 0.0,
        gate: threading.Event | None = None,
        fail_if: Callable[[Sequence[np.ndarray]], bool] | None = None,
    ) -> None:
        self.delay = delay
        self.gate = gate
        self.fail_if = fail_if
        self.batches: list[list[int]] = []
        self.options: list[TranscribeOptions | None] = []
        self.started = threading.Event()

    def transcribe(
        self, audios: Sequence[np.ndarray], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        self.batches.append([len(a) for a in audios])
        self.options.append(options)
        self.started.set()
        if options is not None:  # as the real engines do
            resolve_language(options.language, checkpoint_default=None)
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if self.fail_if is not None and self.fail_if(audios):
            raise RuntimeError("the engine choked on this batch")
        words = options is not None and options.word_timestamps
        return [self._one(len(a), words) for a in audios]

    def _one(self, n: int, words: bool) -> Transcript:
        duration = n / SR
        half = round(duration / 2, 3)
        first, second = text_for(n).split()
        segments = (
            Segment(0, 0.0, half, first, (Word(0.0, half, first, 0.9),) if words else None),
            Segment(1, half, duration, second, (Word(half, duration, second, 0.8),) if words else None),
        )
        return Transcript(
            text=text_for(n),
            language="en",
            duration=duration,
            segments=segments,
            model=self.model_name,
            engine=self.engine,
        )

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def clip(n: int, value: float = 0.1) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def wav_bytes(n_samples: int, rate: int = SR) -> bytes:
    t = np.arange(n_samples, dtype=np.float32) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.sin(2 * np.pi * 440 * t), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# =========================================================================== Batcher
def make_batcher(fake: FakeTranscriber, **kwargs: Any) -> Batcher:
    settings: dict[str, Any] = {"max_batch_size": 8, "max_wait_s": 0.05, "max_queue": 64}
    settings.update(kwargs)
    return Batcher(fake, metrics=Metrics.create(), **settings)


def run(coro: Any) -> Any:
    """Run a test coroutine with a hard timeout so a stuck batcher fails instead of hanging."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def test_batcher_gathers_concurrent_submits_up_to_max_batch_size() -> None:
    fake = FakeTranscriber(delay=0.01)

    async def main() -> list[Transcript]:
        b = make_batcher(fake, max_batch_size=4, max_wait_s=0.1)
        b.start()
        try:
            return await asyncio.gather(*(b.submit(clip(1000 + i), TranscribeOptions()) for i in range(10)))
        finally:
            await b.drain(5)

    results = run(main())
    assert [r.text for r in results] == [text_for(1000 + i) for i in range(10)]  # each its own clip
    assert fake.batch_sizes == [4, 4, 2]
    assert sorted(n for batch in fake.batches for n in batch) == [1000 + i for i in range(10)]


def test_batcher_records_batch_sizes_in_metrics() -> None:
    fake = FakeTranscriber()
    metrics = Metrics.create()

    async def main() -> None:
        b = Batcher(fake, max_batch_size=3, max_wait_s=0.1, max_queue=8, metrics=metrics)
        b.start()
        try:
            await asyncio.gather(*(b.submit(clip(100), TranscribeOptions()) for _ in range(5)))
        finally:
            await b.drain(5)

    run(main())
    assert metrics.registry.get_sample_value("twi_asr_batch_size_count") == 2
    assert metrics.registry.get_sample_value("twi_asr_batch_size_sum") == 5
    assert metrics.registry.get_sample_value("twi_asr_real_time_factor_count") == 2


def test_batcher_lone_request_waits_at_most_max_wait() -> None:
    fake = FakeTranscriber()

    async def main() -> float:
        b = make_batcher(fake, max_wait_s=0.2)
        b.start()
        try:
            t0 = time.perf_counter()
            await b.submit(clip(100), TranscribeOptions())
            return time.perf_counter() - t0
        finally:
            await b.drain(5)

    elapsed = run(main())
    assert 0.18 <= elapsed < 1.0, elapsed
    assert fake.batch_sizes == [1]


def test_batcher_does_not_wait_past_max_wait_for_company() -> None:
    fake = FakeTranscriber()

    async def main() -> None:
        b = make_batcher(fake, max_wait_s=0.05)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit(clip(100), TranscribeOptions()))
            await asyncio.sleep(0.3)  # well past max_wait: the first batch is gone already
            assert first.done()
            await b.submit(clip(200), TranscribeOptions())
        finally:
            await b.drain(5)

    run(main())
    assert fake.batches == [[100], [200]]


def test_batcher_waits_for_company_within_max_wait() -> None:
    fake = FakeTranscriber()

    async def main() -> None:
        b = make_batcher(fake, max_wait_s=1.0, max_batch_size=2)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit(clip(100), TranscribeOptions()))
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            await asyncio.gather(first, b.submit(clip(200), TranscribeOptions()))
            assert time.perf_counter() - t0 < 0.5  # a full batch goes at once, no need to wait 1 s
        finally:
            await b.drain(5)

    run(main())
    assert fake.batches == [[100, 200]]


def test_batcher_groups_by_options() -> None:
    fake = FakeTranscriber()
    en, auto = TranscribeOptions(language="en"), TranscribeOptions()

    async def main() -> list[Transcript]:
        b = make_batcher(fake, max_wait_s=0.1)
        b.start()
        try:
            opts = [en, auto, en, auto, TranscribeOptions(language="en")]
            return await asyncio.gather(*(b.submit(clip(100 + i), o) for i, o in enumerate(opts)))
        finally:
            await b.drain(5)

    results = run(main())
    assert [r.text for r in results] == [text_for(100 + i) for i in range(5)]
    assert sorted(map(sorted, fake.batches)) == [[100, 102, 104], [101, 103]]
    for batch, options in zip(fake.batches, fake.options, strict=True):
        assert options == (en if batch[0] % 2 == 0 else auto)  # only identical options share a batch


def test_batcher_refuses_when_the_queue_is_full() -> None:
    gate = threading.Event()
    fake = FakeTranscriber(gate=gate)

    async def main() -> None:
        b = make_batcher(fake, max_batch_size=1, max_wait_s=0.0, max_queue=2)
        b.start()
        try:
            running = asyncio.ensure_future(b.submit(clip(1), TranscribeOptions()))
            await wait_until(fake.started.is_set)  # the first job is in the engine, the queue is empty
            assert not b.saturated
            queued = [asyncio.ensure_future(b.submit(clip(2 + i), TranscribeOptions())) for i in range(2)]
            await asyncio.sleep(0.01)
            assert b.saturated and b.depth == 3
            with pytest.raises(QueueFullError) as info:
                await b.submit(clip(9), TranscribeOptions())
            assert info.value.retry_after >= 1 and isinstance(info.value.retry_after, int)
            assert info.value.code == "queue_full"
            gate.set()
            done = await asyncio.gather(running, *queued)
            assert [t.text for t in done] == [text_for(1), text_for(2), text_for(3)]
            assert not b.saturated and b.depth == 0
        finally:
            gate.set()
            await b.drain(5)

    run(main())
    assert 9 not in [n for batch in fake.batches for n in batch]


def test_batcher_retries_a_failed_batch_one_by_one() -> None:
    fake = FakeTranscriber(fail_if=lambda audios: any(a[0] < 0 for a in audios))

    async def main() -> list[Any]:
        b = make_batcher(fake, max_wait_s=0.1)
        b.start()
        try:
            clips = [clip(100), clip(200, -0.5), clip(300)]
            return await asyncio.gather(
                *(b.submit(c, TranscribeOptions()) for c in clips), return_exceptions=True
            )
        finally:
            await b.drain(5)

    good1, bad, good2 = run(main())
    assert isinstance(good1, Transcript) and good1.text == text_for(100)
    assert isinstance(good2, Transcript) and good2.text == text_for(300)
    assert isinstance(bad, RuntimeError)
    assert fake.batches == [[100, 200, 300], [100], [200], [300]]


def test_batcher_skips_cancelled_and_abandoned_requests() -> None:
    gate = threading.Event()
    fake = FakeTranscriber(gate=gate)

    async def main() -> None:
        b = make_batcher(fake, max_wait_s=0.05)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit(clip(1), TranscribeOptions()))
            await wait_until(fake.started.is_set)
            kept = asyncio.ensure_future(b.submit(clip(2), TranscribeOptions()))
            cancelled = asyncio.ensure_future(b.submit(clip(3), TranscribeOptions()))
            abandoned = asyncio.ensure_future(asyncio.wait_for(b.submit(clip(4), TranscribeOptions()), 0.05))
            await asyncio.sleep(0.01)
            cancelled.cancel()
            with pytest.raises(asyncio.TimeoutError):
                await abandoned  # the client gave up while the engine was busy
            gate.set()
            assert (await first).text == text_for(1)
            assert (await kept).text == text_for(2)
            assert cancelled.cancelled()
            # a batch whose requests are all gone costs no engine call at all
            gone = asyncio.ensure_future(b.submit(clip(5), TranscribeOptions()))
            await asyncio.sleep(0)
            gone.cancel()
            await asyncio.sleep(0.2)
            assert b.depth == 0
        finally:
            gate.set()
            await b.drain(5)

    run(main())
    assert fake.batches == [[1], [2]]


def test_batcher_drain_lets_queued_work_finish() -> None:
    fake = FakeTranscriber(delay=0.05)

    async def main() -> list[Transcript]:
        b = make_batcher(fake, max_batch_size=2, max_wait_s=0.0)  # no gathering window: see the xfail below
        b.start()
        jobs = [asyncio.ensure_future(b.submit(clip(10 + i), TranscribeOptions())) for i in range(5)]
        await asyncio.sleep(0)
        await b.drain(5)
        return await asyncio.wait_for(asyncio.gather(*jobs), 0.5)  # settled already: no engine left

    assert [t.text for t in run(main())] == [text_for(10 + i) for i in range(5)]


def test_batcher_drain_does_not_lose_a_job_being_gathered() -> None:
    fake = FakeTranscriber()

    async def main() -> Transcript:
        b = make_batcher(fake, max_batch_size=8, max_wait_s=0.3)
        b.start()
        job = asyncio.ensure_future(b.submit(clip(10), TranscribeOptions()))
        await asyncio.sleep(0.02)  # the collector has it and waits for company
        await b.drain(5)
        return await asyncio.wait_for(job, 1.0)

    assert run(main()).text == text_for(10)


# =========================================================================== the app
API_KEY = "unit-test-key"


@contextmanager
def serve(fake: FakeTranscriber | None = None, **settings: Any) -> Iterator[TestClient]:
    app = create_app(ServerSettings(**settings), transcriber=fake or FakeTranscriber())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@asynccontextmanager
async def serve_async(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=20) as client:
            yield client


def post(
    client: TestClient | Any,
    data: bytes | None = None,
    *,
    route: str = "/v1/audio/transcriptions",
    name: str = "speech.wav",
    **fields: Any,
) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")} if data is not None else None
    return client.post(route, files=files, data=fields)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] == response.headers["x-request-id"]
    return err


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with serve(max_upload_mb=0.05, max_audio_s=2.0) as c:
        yield c


N = 12345  # samples of the default upload (0.77 s)
USAGE_N = {"type": "duration", "seconds": 1}  # OpenAI bills whole seconds, rounded up


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_response_format(client: TestClient, fmt: str) -> None:
    r = post(client, wav_bytes(N), response_format=fmt)
    assert r.status_code == 200, r.text
    text = text_for(N)
    if fmt == "json":
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"text": text, "usage": USAGE_N}
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == text + "\n"
    elif fmt == "srt":
        assert r.headers["content-type"].startswith("text/plain")
        cues = [SRT_CUE.match(block) for block in r.text.strip().split("\n\n")]
        assert all(cues), r.text
        assert [m.group(1) for m in cues if m] == ["1", "2"]
        assert " ".join(m.group(4) for m in cues if m) == text
        assert cues[0] and cues[0].group(2) == "00:00:00,000"
    elif fmt == "vtt":
        assert r.headers["content-type"].startswith("text/vtt")
        blocks = r.text.strip().split("\n\n")
        assert blocks[0] == "WEBVTT"
        assert all(VTT_TIME.match(b.split("\n")[0]) for b in blocks[1:]), r.text
        assert " ".join(b.split("\n", 1)[1] for b in blocks[1:]) == text
    else:
        body = r.json()
        assert body["task"] == "transcribe"
        assert body["language"] == "english"  # OpenAI names languages
        assert body["text"] == text
        assert body["duration"] == pytest.approx(N / SR, abs=1e-3)
        assert [s["id"] for s in body["segments"]] == [0, 1]
        assert "words" not in body and all("words" not in s for s in body["segments"])
        assert body["model"] == "fake-model" and body["engine"] == "fake"


def test_word_timestamps_in_verbose_json(client: TestClient) -> None:
    r = client.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", wav_bytes(N))},
        data={"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [w["word"] for w in body["words"]] == text_for(N).split()
    assert all(w["start"] <= w["end"] for w in body["words"])
    assert [len(s["words"]) for s in body["segments"]] == [1, 1]


def test_form_fields_become_options() -> None:
    fake = FakeTranscriber()
    with serve(fake, beam_size=3) as c:
        assert post(c, wav_bytes(N), language="en", prompt="Kwame, Accra").status_code == 200
        assert post(c, wav_bytes(N), temperature="0.3", language="auto").status_code == 200
        assert post(c, wav_bytes(N), route="/v1/audio/translations").status_code == 200
        assert post(c, wav_bytes(N), language="twi").status_code == 200  # the checkpoint's default
        assert post(c, wav_bytes(N), beam_size="1").status_code == 200  # per request (twi-asr extension)
        assert_error(post(c, wav_bytes(N), beam_size="0"), 422, "invalid_field")
    first, second, third, fourth, fifth = fake.options
    assert fifth is not None and fifth.beam_size == 1
    assert first is not None and second is not None and third is not None and fourth is not None
    assert (first.language, first.initial_prompt, first.beam_size, first.task) == (
        "en",
        "Kwame, Accra",
        3,
        "transcribe",
    )
    assert first.temperatures == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # 0 keeps the fallback ladder
    assert second.temperatures == (0.3,)
    assert (third.task, third.language) == ("translate", None)
    assert fourth.language == "twi"


def test_translation_verbose_json_says_translate(client: TestClient) -> None:
    r = post(client, wav_bytes(N), route="/v1/audio/translations", response_format="verbose_json")
    assert r.status_code == 200, r.text
    assert r.json()["task"] == "translate"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not audio", 415, "invalid_audio"),
        ("header-only wav", 422, "invalid_audio"),  # decodes to zero samples
        ("empty file", 422, "empty_file"),
        ("missing file", 422, "missing_field"),
        ("bad language", 400, "invalid_option"),
        ("bad response_format", 422, "invalid_field"),
        ("temperature too high", 422, "invalid_field"),
        ("upload too large (body)", 413, "upload_too_large"),
        ("upload too large (content-length)", 413, "upload_too_large"),
        ("audio too long", 413, "audio_too_long"),
    ],
)
def test_limits_and_bad_input_get_their_status_and_code(
    client: TestClient, case: str, status: int, code: str
) -> None:
    # the client fixture allows 0.05 MB (52 kB, plus 64 kB of multipart slack on Content-Length)
    # and 2 s of audio
    good = wav_bytes(N)
    r = {
        "not audio": lambda: post(client, b"Meeting notes: not audio at all.\n" * 40, name="notes.wav"),
        "header-only wav": lambda: post(client, good[:44]),
        "empty file": lambda: post(client, b""),
        "missing file": lambda: post(client, None, response_format="json"),
        "bad language": lambda: post(client, good, language="klingon"),
        "bad response_format": lambda: post(client, good, response_format="docx"),
        "temperature too high": lambda: post(client, good, temperature="1.5"),
        "upload too large (body)": lambda: post(client, wav_bytes(40_000)),  # 80 kB: past the route
        "upload too large (content-length)": lambda: post(client, wav_bytes(200_000)),  # 400 kB
        "audio too long": lambda: post(client, wav_bytes(3 * 8000, rate=8000)),  # 3 s in 48 kB
    }[case]()
    err = assert_error(r, status, code)
    if code in ("missing_field", "empty_file", "invalid_audio"):
        assert err["param"] == "file"
    # the server is fine afterwards
    assert post(client, good).json() == {"text": text_for(N), "usage": USAGE_N}


def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.get("/v1/audio/transcriptions"), 405, "method_not_allowed")


def test_engine_failure_is_a_json_500_with_request_id() -> None:
    fake = FakeTranscriber(fail_if=lambda audios: True)
    with serve(fake) as c:
        r = c.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", wav_bytes(N))},
            headers={"X-Request-ID": "r1"},
        )
        assert r.status_code == 500
        assert r.json()["error"]["code"] in ("internal_error", "engine_error")
        assert r.headers.get("x-request-id") == "r1"
        assert r.json()["error"]["request_id"] == "r1"


def test_engine_failure_does_not_take_the_server_down() -> None:
    fake = FakeTranscriber(fail_if=lambda audios: any(len(a) == 1600 for a in audios))
    with serve(fake) as c:
        r = post(c, wav_bytes(1600))
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert post(c, wav_bytes(N)).json() == {"text": text_for(N), "usage": USAGE_N}
        assert c.get("/ready").status_code == 200


def test_request_timeout_is_504() -> None:
    with serve(FakeTranscriber(delay=0.5), request_timeout_s=0.1) as c:
        assert_error(post(c, wav_bytes(N)), 504, "timeout")


def test_probes_log_at_debug_and_requests_at_info(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A HEALTHCHECK every 10 s must not drown the request log; a failing probe still shows."""
    with caplog.at_level(logging.DEBUG, logger="twi_asr.server"):
        client.get("/health")
        client.get("/ready")
        client.get("/metrics")
        post(client, wav_bytes(N))
    levels = {r.getMessage().split()[1]: r.levelno for r in caplog.records if r.name == "twi_asr.server"}
    assert levels["/health"] == levels["/ready"] == levels["/metrics"] == logging.DEBUG
    assert levels["/v1/audio/transcriptions"] == logging.INFO


def test_request_id_on_every_response(client: TestClient) -> None:
    responses = [
        client.get("/health"),
        client.get("/ready"),
        client.get("/metrics"),
        client.get("/v1/models"),
        client.get("/openapi.json"),
        client.get("/nope"),
        post(client, wav_bytes(N)),
        post(client, b""),
        post(client, wav_bytes(200_000)),  # refused by the middleware before routing
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids), ids
    assert all(re.fullmatch(r"[0-9a-f]{32}", i or "") for i in ids)
    sent = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert sent.headers["x-request-id"] == "trace-42"
    r = client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", b"")}, headers={"X-Request-ID": "trace-43"}
    )
    assert r.headers["x-request-id"] == "trace-43" and r.json()["error"]["request_id"] == "trace-43"
    long_id = "x" * 500
    assert client.get("/health", headers={"X-Request-ID": long_id}).headers["x-request-id"] == "x" * 128


def test_models_card(client: TestClient) -> None:
    from twi_asr import __version__

    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "fake-model" and card["engine"] == "fake" and card["device"] == "cpu"
    assert card["weights_hash"] == "unknown"  # no resolved model folder behind a bare transcriber
    assert card["twi_asr_version"] == __version__


def test_health_ready_metrics(client: TestClient) -> None:
    from twi_asr import __version__

    health = client.get("/health").json()
    assert health["status"] == "ok" and health["version"] == __version__
    assert health["model"] == "fake-model" and health["weights_hash"] == "unknown"
    assert set(health["build"]) == {"version", "commit", "created", "source", "lock_sha256", "image_id"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    post(client, wav_bytes(N))
    text = client.get("/metrics").text
    assert "twi_asr_model_loaded 1.0" in text
    assert re.search(r'twi_asr_requests_total\{route="/v1/audio/transcriptions",status="200"\} [1-9]', text)
    assert re.search(r"twi_asr_batch_size_count [1-9]", text)
    assert re.search(r"twi_asr_audio_duration_seconds_count [1-9]", text)
    assert "twi_asr_queue_depth 0.0" in text


def test_openapi_and_docs_list_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/health", "/ready"):
        assert path in spec["paths"], path
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key", f"Basic {API_KEY}", "Bearer", f"Bearer {API_KEY}x"],
    ids=["none", "wrong", "basic", "empty", "longer"],
)
def test_auth_refuses_missing_or_wrong_keys(header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with serve(api_key=API_KEY) as c:
        for r in (
            c.get("/v1/models", headers=headers),
            c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(N))}, headers=headers),
            c.post("/v1/audio/translations", files={"file": ("a.wav", wav_bytes(N))}, headers=headers),
        ):
            assert_error(r, 401, "invalid_api_key")
            assert r.headers["www-authenticate"] == "Bearer"


def test_auth_accepts_the_key_and_leaves_operations_open() -> None:
    good = {"Authorization": f"Bearer {API_KEY}"}
    with serve(api_key=API_KEY) as c:
        assert c.get("/v1/models", headers=good).status_code == 200
        r = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(N))}, headers=good)
        assert r.status_code == 200 and r.json() == {"text": text_for(N), "usage": USAGE_N}
        ok = {"authorization": f"bearer   {API_KEY}  "}  # scheme case and spaces do not matter
        assert c.get("/v1/models", headers=ok).status_code == 200
        for path in ("/health", "/ready", "/metrics", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assert "invalid_api_key" not in c.get("/metrics").text


def test_auth_off_needs_no_header(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 200
    assert post(client, wav_bytes(N)).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWI_ASR_API_KEY", "from-env")
    settings = ServerSettings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)  # a secret, not printed
    with TestClient(create_app(settings, transcriber=FakeTranscriber())) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_long_form_setting_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("TWI_ASR_LONG_FORM", "sequential")
    assert ServerSettings().long_form == "sequential"
    with pytest.raises(ValidationError):
        ServerSettings(long_form="nope")


# --------------------------------------------------------------------------- loading
def test_ready_is_503_while_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    async def slow_load(self: ServerState, resolved: Any = None) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        self.attach(FakeTranscriber(), None)

    monkeypatch.setattr(ServerState, "load", slow_load)
    with TestClient(create_app(ServerSettings(model="some-model"))) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["status"] == "loading" and "some-model" in r.json()["detail"]
        assert c.get("/health").status_code == 200  # alive while loading
        assert_error(post(c, wav_bytes(N)), 503, "not_ready")
        assert_error(c.get("/v1/models"), 503, "not_ready")
        assert "twi_asr_model_loaded 0.0" in c.get("/metrics").text
        release.set()
        deadline = time.monotonic() + 5
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert post(c, wav_bytes(N)).json() == {"text": text_for(N), "usage": USAGE_N}


def test_load_through_the_engine_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import twi_asr.engines
    import twi_asr.models

    seen: dict[str, Any] = {}

    class Resolved:
        source = "hub:org/whisper-twi"
        format = "ctranslate2"
        path = "/models/twi"

        def weights_hash(self) -> str:
            return "abc123"

    def fake_resolve(name: str) -> Resolved:
        seen["model"] = name
        return Resolved()

    def fake_load(resolved: Any, **kwargs: Any) -> FakeTranscriber:
        seen.update(kwargs)
        return FakeTranscriber()

    monkeypatch.setattr(twi_asr.models, "resolve_model", fake_resolve)
    monkeypatch.setattr(twi_asr.engines, "load_transcriber", fake_load)
    settings = ServerSettings(model="org/whisper-twi", batching=False, max_batch_size=16)
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 5
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        card = c.get("/v1/models").json()["data"][0]
    assert seen["model"] == "org/whisper-twi"
    assert seen["batch_size"] == 1  # --no-batching: the engine gets one clip at a time
    assert card["source"] == "hub:org/whisper-twi" and card["weights_hash"] == "abc123"
    assert card["format"] == "ctranslate2"


def test_ready_says_why_the_model_failed_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import twi_asr.engines

    def broken(resolved: Any, **kwargs: Any) -> None:
        raise EnvironmentProblem("ctranslate2 is not installed: pip install 'twi-asr[ct2]'")

    monkeypatch.setattr(twi_asr.engines, "load_transcriber", broken)
    with TestClient(create_app(ServerSettings(), resolved=object())) as c:  # type: ignore[arg-type]
        # A hang guard, not a speed claim: the failing load runs in a thread that, on a loaded
        # 2-core machine, once took 7 s to be scheduled.
        deadline = time.monotonic() + 30
        while c.get("/ready").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = c.get("/ready")
        assert r.status_code == 503 and "retry-after" not in r.headers  # retrying will not help
        assert r.json()["status"] == "error" and "ctranslate2 is not installed" in r.json()["detail"]
        assert "ctranslate2 is not installed" in post(c, wav_bytes(N)).json()["error"]["message"]
        assert c.get("/health").status_code == 200


# --------------------------------------------------------------------------- concurrency
def test_concurrent_requests_are_batched_and_not_mixed_up() -> None:
    fake = FakeTranscriber(delay=0.05)
    app = create_app(ServerSettings(max_batch_size=8, max_wait_ms=100), transcriber=fake)
    sizes = [8000 + 111 * i for i in range(16)]

    async def main() -> list[httpx.Response]:
        async with serve_async(app) as c:
            return await asyncio.gather(
                *(c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(n))}) for n in sizes)
            )

    responses = run(main())
    assert [r.json()["text"] for r in responses] == [text_for(n) for n in sizes]
    assert max(fake.batch_sizes) > 1 and max(fake.batch_sizes) <= 8
    assert sum(fake.batch_sizes) == 16


def test_saturation_gives_503_with_retry_after_and_recovers() -> None:
    gate = threading.Event()
    fake = FakeTranscriber(gate=gate)
    app = create_app(ServerSettings(max_batch_size=1, max_queue=1, max_wait_ms=0), transcriber=fake)

    async def main() -> None:
        async with serve_async(app) as c:

            def send() -> Any:
                return c.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(N))})

            first = asyncio.ensure_future(send())
            await wait_until(fake.started.is_set)
            second = asyncio.ensure_future(send())  # waits in the queue (size 1)
            await wait_until(lambda: app.state.twi.batcher.saturated)
            ready = await c.get("/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "saturated"
            assert int(ready.headers["retry-after"]) >= 1
            refused = await asyncio.gather(*(send() for _ in range(5)))
            for r in refused:
                assert_error(r, 503, "queue_full")
                assert int(r.headers["retry-after"]) >= 1
            gate.set()
            assert (await first).status_code == 200 and (await second).status_code == 200
            assert (await c.get("/ready")).status_code == 200
            assert (await send()).json() == {"text": text_for(N), "usage": USAGE_N}

    try:
        run(main())
    finally:
        gate.set()
    assert fake.batch_sizes == [1, 1, 1]


def test_empty_api_key_variable_means_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """TWI_ASR_API_KEY= (empty, as compose files pass unset variables) must not lock the server."""
    from twi_asr.server.settings import ServerSettings

    monkeypatch.setenv("TWI_ASR_API_KEY", "")
    assert ServerSettings().api_key is None
    monkeypatch.setenv("TWI_ASR_API_KEY", "s3cret")
    assert ServerSettings().api_key is not None
