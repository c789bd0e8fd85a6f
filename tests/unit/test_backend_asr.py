"""Unit tests of the backend's ASR pool (``twi_asr.backend.asr``) against ``httpx.MockTransport``.

One transport answers for every fake server, by host: a server is "up" (a
verbose_json answer), "refused" (connection refused), or scripted. Back-off
sleeps are patched out, so failover costs nothing.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import twi_asr.client
from twi_asr.backend.asr import AsrPool, AsrRejected, AsrResult, AsrUnavailable, options_from
from twi_asr.backend.errors import BackendError

VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 2.0,
    "text": " Maakye, wo ho te sɛn? ",
    "segments": [{"id": 0, "start": 0.0, "end": 2.0, "text": " Maakye, wo ho te sɛn?"}],
    "model": "tiny.en",
    "engine": "ctranslate2",
}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(twi_asr.client.time, "sleep", lambda _s: None)


class Farm:
    """Fake 8001 servers by host name: each answers with a function of the request."""

    def __init__(self, **behaviour: Callable[[httpx.Request], httpx.Response]) -> None:
        self.behaviour = behaviour
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def url(self, host: str) -> str:
        return f"http://{host}:8001"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.behaviour[request.url.host](request)

    def hosts(self, path: str = "/v1/audio/transcriptions") -> list[str]:
        return [r.url.host for r in self.requests if r.url.path == path]


def up(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/ready":
        return httpx.Response(200, json={"status": "ready", "queue_depth": 0})
    return httpx.Response(
        200, json=VERBOSE, headers={"x-request-id": request.headers.get("x-request-id", "")}
    )


def refused(_request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def answer(status: int, code: str, message: str = "nope") -> Callable[[httpx.Request], httpx.Response]:
    return lambda _r: httpx.Response(status, json={"error": {"code": code, "message": message}})


@pytest.fixture
def pool_for() -> Iterator[Callable[..., AsrPool]]:
    made: list[AsrPool] = []

    def factory(farm: Farm, *hosts: str, **kwargs: Any) -> AsrPool:
        made.append(AsrPool([farm.url(h) for h in hosts], transport=httpx.MockTransport(farm), **kwargs))
        return made[-1]

    yield factory
    for p in made:
        p.close()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF" + b"\x00" * 1000)
    return path


def fields(request: httpx.Request) -> dict[str, list[str]]:
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    out: dict[str, list[str]] = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.decode().split('name="')[1].split('"')[0]
        out.setdefault(name, []).append("<file>" if b"filename=" in head else body.decode())
    return out


# --------------------------------------------------------------------------- the request
def test_result_and_request_shape(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=up)
    options = {"language": "tw", "prompt": "Kwame", "word_timestamps": True, "beam_size": 3, "webhook": "x"}
    result = pool_for(farm, "a", api_key="k3y").transcribe(
        wav, options, filename="ɛkɔm.wav", request_id="job_1"
    )
    assert isinstance(result, AsrResult)
    assert result.transcript.text == "Maakye, wo ho te sɛn?" and result.body["engine"] == "ctranslate2"
    assert result.server == "http://a:8001" and result.seconds >= 0
    (req,) = farm.requests
    assert req.headers["x-request-id"] == "job_1" and req.headers["authorization"] == "Bearer k3y"
    f = fields(req)
    assert f["response_format"] == ["verbose_json"] and f["language"] == ["tw"] and f["prompt"] == ["Kwame"]
    assert f["timestamp_granularities[]"] == ["word", "segment"] and f["beam_size"] == ["3"]
    assert 'filename="ɛkɔm.wav"' in req.content.decode()


def test_translate_goes_to_the_translations_route(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=up)
    pool_for(farm, "a").transcribe(wav, {"task": "translate"}, filename="a.wav", request_id="r")
    assert farm.requests[0].url.path == "/v1/audio/translations"
    assert "timestamp_granularities[]" not in fields(farm.requests[0])


def test_bad_options_are_rejected_before_any_request() -> None:
    for bad in ({"beam_size": 0}, {"task": "summarise"}, {"beam_size": "many"}):
        with pytest.raises(AsrRejected) as info:
            options_from(bad)
        assert info.value.code == "invalid_option" and info.value.status == 400
    assert options_from({"word_timestamps": "true"}).word_timestamps is True
    assert options_from({"word_timestamps": "false", "language": ""}).language is None


# --------------------------------------------------------------------------- failover
def test_failover_order_and_round_robin(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=refused, b=up, c=up)
    pool = pool_for(farm, "a", "b", "c", retries=1)
    servers = [pool.transcribe(wav, {}, filename="a.wav", request_id=f"r{i}").server for i in range(5)]
    assert servers[0] == "http://b:8001"  # a refused (twice: one retry), then b
    assert set(servers[1:]) == {"http://b:8001", "http://c:8001"}  # the two that answer take turns
    assert servers[1] != servers[2] and servers[2] != servers[3]
    assert farm.hosts().count("a") == 2  # a failed: it goes last, so it is not asked again


def test_a_failed_server_is_tried_again_after_recheck_s(pool_for: Any, wav: Path) -> None:
    state = {"a": refused}
    farm = Farm(a=lambda r: state["a"](r), b=up)
    pool = pool_for(farm, "a", "b", retries=0, recheck_s=0.0)  # (time.sleep is patched out)
    assert pool.transcribe(wav, {}, filename="a.wav", request_id="r").server == "http://b:8001"
    state["a"] = up
    got = {pool.transcribe(wav, {}, filename="a.wav", request_id="r").server for _ in range(4)}
    assert got == {"http://a:8001", "http://b:8001"}  # a is back in the rotation


def test_5xx_and_a_refused_key_fail_over_too(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=answer(500, "internal_error", "boom"), b=answer(401, "invalid_api_key"), c=up)
    result = pool_for(farm, "a", "b", "c").transcribe(wav, {}, filename="a.wav", request_id="r")
    assert result.server == "http://c:8001"


def test_all_down_is_asr_unavailable(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=refused, b=answer(503, "queue_full", "busy"))
    with pytest.raises(AsrUnavailable) as info:
        pool_for(farm, "a", "b", retries=1).transcribe(wav, {}, filename="a.wav", request_id="r")
    exc = info.value
    assert isinstance(exc, BackendError) and exc.status == 503 and exc.code == "asr_unavailable"
    assert set(exc.reasons) == {"http://a:8001", "http://b:8001"}
    assert "ConnectError" in exc.reasons["http://a:8001"] and "http://b:8001" in exc.message
    assert exc.headers["Retry-After"] == "5"


def test_timeouts_everywhere_fail_the_job_instead_of_requeueing_it(pool_for: Any, wav: Path) -> None:
    def slow(_r: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    farm = Farm(a=slow, b=refused)
    with pytest.raises(AsrRejected) as info:
        pool_for(farm, "a", "b", retries=0).transcribe(wav, {}, filename="a.wav", request_id="r")
    assert info.value.code == "asr_timeout" and info.value.status == 504
    assert farm.hosts() == ["a", "b"]  # the timeout was not retried on a, but b was tried


@pytest.mark.parametrize(
    ("status", "code"),
    [(415, "invalid_audio"), (422, "empty_file"), (413, "audio_too_long"), (400, "audio_too_short"),
     (422, "invalid_field")],
)  # fmt: skip
def test_input_errors_are_rejected_with_the_server_code_and_not_retried(
    pool_for: Any, wav: Path, status: int, code: str
) -> None:
    farm = Farm(a=answer(status, code, "notes.wav: not audio"), b=up)
    with pytest.raises(AsrRejected) as info:
        pool_for(farm, "a", "b").transcribe(wav, {}, filename="notes.wav", request_id="r")
    assert info.value.code == code and info.value.status == status
    assert info.value.message == "notes.wav: not audio" and info.value.server == "http://a:8001"
    assert farm.hosts() == ["a"]  # another server would say the same


def test_concurrent_callers_share_one_pool(pool_for: Any, wav: Path) -> None:
    farm = Farm(a=up, b=up)
    pool = pool_for(farm, "a", "b")
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            server = pool.transcribe(wav, {}, filename="a.wav", request_id="r").server
            with lock:
                seen.append(server)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(seen) == {"http://a:8001": 40, "http://b:8001": 40}  # strict round-robin


# --------------------------------------------------------------------------- passthrough
def test_transcribe_raw_fails_over_with_the_whole_file(pool_for: Any) -> None:
    def dies(_r: httpx.Request) -> httpx.Response:
        raise httpx.WriteError("broken pipe")

    def srt(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="1\n00:00:00,000 --> 00:00:01,000\nMaakye\n")

    farm = Farm(a=dies, b=srt)
    data = b"RIFF" + bytes(range(256)) * 1000
    fh = io.BytesIO(data)
    raw = pool_for(farm, "a", "b", retries=1).transcribe_raw(
        fh, {"response_format": "srt"}, filename="a.wav", request_id="r9"
    )
    assert raw.server == "http://b:8001" and raw.response.text.endswith("Maakye\n")
    last = farm.requests[-1]
    assert data in last.content and last.headers["x-request-id"] == "r9"
    assert fields(last)["response_format"] == ["srt"]


# --------------------------------------------------------------------------- readiness
def test_ready_summaries(pool_for: Any) -> None:
    loading = lambda _r: httpx.Response(503, json={"status": "loading", "detail": "loading tiny.en"})  # noqa: E731
    assert pool_for(Farm(a=up, b=up), "a", "b").ready() == (True, "ok: 2 of 2 servers ready")
    ok, why = pool_for(Farm(a=up, b=refused), "a", "b").ready()
    assert ok and why == "ok: 1 of 2 servers ready (http://b:8001: connection refused)"
    ok, why = pool_for(Farm(a=refused, b=loading), "a", "b").ready()
    assert not ok
    assert why == (
        "no ASR server ready: http://a:8001: connection refused; http://b:8001: 503 loading loading tiny.en"
    )


def test_ready_asks_concurrently(pool_for: Any) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        threading.Event().wait(0.3)  # (time.sleep is patched out)
        return up(request)

    pool = pool_for(Farm(a=slow, b=slow, c=slow, d=slow), "a", "b", "c", "d")
    started = time.monotonic()
    assert pool.ready()[0]
    assert time.monotonic() - started < 0.9  # four 0.3 s probes at once, not one after the other


def test_from_settings() -> None:
    from pydantic import SecretStr

    from twi_asr.backend.settings import BackendSettings

    settings = BackendSettings(asr_url="http://x:8001, http://y:8001/", asr_api_key=SecretStr("s"))
    with AsrPool.from_settings(settings) as pool:
        assert pool.urls == ["http://x:8001", "http://y:8001"]
    with pytest.raises(Exception, match="TWI_ASR_ASR_URL"):
        AsrPool([])
