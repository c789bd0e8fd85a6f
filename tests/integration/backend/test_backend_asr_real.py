"""The backend's ASR pool against two REAL ``twi-asr serve`` processes (tiny.en weights, loopback).

What is real: the servers, their decoding of espeak-ng speech, a text file that only *claims*
to be a wav, a 46 MB two-minute upload, and a server SIGKILLed in the middle of a request.
Tests run in file order; the last one kills server ``a``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from twi_asr.backend.asr import AsrPool, AsrRejected
from twi_asr.text import normalize_twi, wer

from ..conftest import speak
from ..services import EASY_SENTENCES, Server, metric, start_server, stop_server

pytestmark = pytest.mark.slow

SENTENCE = EASY_SENTENCES[0]  # "Please call Stella and ask her to bring these things from the store."


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """Two servers, started at once (each loads tiny.en)."""
    folder = tmp_path_factory.mktemp("asr-servers")
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda name: start_server(folder / f"{name}.log"), ["a", "b"])
    yield a, b
    for srv in (a, b):
        stop_server(srv)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(SENTENCE, tmp_path_factory.mktemp("clip") / "stella.wav")


@pytest.fixture(scope="module")
def two_minutes(clip: Path) -> Path:
    """The sentence padded with silence to 120 s, 48 kHz stereo float32: 46 MB, more than the limit."""
    out = clip.with_name("two_minutes.wav")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
         "-af", "apad=whole_dur=120,pan=stereo|c0=c0|c1=c0", "-ar", "48000", "-c:a", "pcm_f32le", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert out.stat().st_size > 40 * 2**20
    return out


@pytest.fixture
def pool(servers: tuple[Server, Server]) -> Iterator[AsrPool]:
    with AsrPool([s.url for s in servers], retries=1, backoff_s=0.2, timeout_s=300) as p:
        yield p


def said_it(text: str) -> bool:
    return wer(SENTENCE, text) <= 0.35


def test_transcribes_with_both_servers_and_passes_the_request_id(
    pool: AsrPool, servers: tuple[Server, Server], clip: Path
) -> None:
    results = [pool.transcribe(clip, {}, filename="stella.wav", request_id=f"job_{i}") for i in range(2)]
    assert {r.server for r in results} == {s.url for s in servers}  # round-robin
    for r in results:
        assert said_it(r.transcript.text), r.transcript.text
        assert r.body["duration"] == pytest.approx(r.transcript.duration) and r.seconds > 0
    words = pool.transcribe(clip, {"word_timestamps": True}, filename="s.wav", request_id="job_w")
    assert words.transcript.words and words.body["words"]
    raw = pool.transcribe_raw(clip, {"response_format": "srt"}, filename="s.wav", request_id="job_srt_1")
    assert raw.response.headers["x-request-id"] == "job_srt_1"  # 8001 took our id
    assert "-->" in raw.response.text and "stella" in normalize_twi(raw.response.text)
    assert pool.ready() == (True, "ok: 2 of 2 servers ready")


def test_a_text_file_named_wav_is_rejected_with_the_servers_code(pool: AsrPool, tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("Meeting notes: this is text, not audio.\n" * 20)
    with pytest.raises(AsrRejected) as info:
        pool.transcribe(notes, {}, filename="notes.wav", request_id="job_bad")
    assert info.value.code == "invalid_audio" and info.value.status == 415
    assert "notes.wav" in info.value.message


def test_two_minutes_stream_through_without_being_read_into_memory(pool: AsrPool, two_minutes: Path) -> None:
    tracemalloc.start()
    try:
        result = pool.transcribe(two_minutes, {}, filename="two_minutes.wav", request_id="job_long")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, (
        f"peak {peak / 2**20:.1f} MB for a {two_minutes.stat().st_size / 2**20:.0f} MB file"
    )
    assert result.transcript.duration == pytest.approx(120, abs=0.5)
    assert "stella" in normalize_twi(result.transcript.text)


def test_sigkill_mid_request_fails_over_to_the_other_server(
    servers: tuple[Server, Server], clip: Path, two_minutes: Path
) -> None:
    a, b = servers
    with AsrPool([a.url, b.url], retries=1, backoff_s=0.2, timeout_s=300) as pool:
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["result"] = pool.transcribe(two_minutes, {}, filename="long.wav", request_id="job_kill")
            except Exception as exc:  # handed to the test thread
                box["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()  # a is first in turn
        deadline = time.monotonic() + 60
        while metric(httpx.get(a.url + "/metrics", timeout=5).text, "twi_asr_admitted_audio_seconds") <= 0:
            assert time.monotonic() < deadline and worker.is_alive(), "a never took the request"
            time.sleep(0.02)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        worker.join(300)
        assert "error" not in box, box.get("error")
        result = box["result"]
        assert result.server == b.url  # type: ignore[attr-defined]
        assert "stella" in normalize_twi(result.transcript.text)  # type: ignore[attr-defined]

        later = [pool.transcribe(clip, {}, filename="s.wav", request_id=f"job_{i}") for i in range(3)]
        assert all(r.server == b.url and said_it(r.transcript.text) for r in later)
        ok, why = pool.ready()
        assert ok and why == f"ok: 1 of 2 servers ready ({a.url}: connection refused)"
