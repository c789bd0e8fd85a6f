"""``twi-asr serve`` under hostile and heavy traffic: a real uvicorn process, real tiny.en weights.

Memory is read from the server's ``/proc/PID/status`` (VmRSS, and VmHWM reset through
``clear_refs``). Speech is espeak-ng English with known text, so answers are checked by WER.
Timing assertions carry generous margins (2 shared cores); ``bench/server_load.py`` holds
the tight numbers.
"""

from __future__ import annotations

import json
import re
import select
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from twi_asr.text import wer

from .conftest import speak
from .media import silence_opus
from .services import EASY_SENTENCES, Server, metric, start_server, stop_server

pytestmark = pytest.mark.slow

SR = 16000
MB = 1_000_000
MAX_WER = 0.35


# --------------------------------------------------------------------------- helpers
def status_of(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def server_metric(server: Server, name: str) -> float:
    return metric(httpx.get(server.url + "/metrics", timeout=10).text, name)


def transcribe(server: Server, path: Path, timeout: float = 300, **data: str) -> httpx.Response:
    with path.open("rb") as fh:
        return httpx.post(
            server.url + "/v1/audio/transcriptions",
            files={"file": (path.name, fh)},
            data=data,
            timeout=timeout,
        )


def read_reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response from a raw socket: its head and its body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the connection closed mid-response: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        more = sock.recv(65536)
        assert more
        body += more
    return head, body


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Default flags: ctranslate2 with two engine lanes on this CPU, 4 h of admitted audio."""
    srv = start_server(tmp_path_factory.mktemp("traffic") / "stderr.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """2 MB uploads."""
    srv = start_server(tmp_path_factory.mktemp("small") / "stderr.log", "--max-upload-mb", "2")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, str]]:
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.fail("espeak-ng and ffmpeg are needed: apt-get install espeak-ng ffmpeg")
    folder = tmp_path_factory.mktemp("sentences")
    out = []
    for i, text in enumerate(EASY_SENTENCES):
        audio, rate = sf.read(str(speak(text, folder / f"s{i:02d}.wav")), dtype="float32")
        assert rate == SR
        out.append((audio, text))
    return out


def speech_file(sentences: list[tuple[np.ndarray, str]], path: Path, seconds: float) -> tuple[Path, str]:
    """The sentences in turn, 0.5 s apart, until ``seconds``; returns the file and what was said."""
    gap = np.zeros(SR // 2, dtype=np.float32)
    parts, words, total, i = [], [], 0.0, 0
    while total < seconds:
        audio, text = sentences[i % len(sentences)]
        parts += [audio, gap]
        words.append(text)
        total += (len(audio) + len(gap)) / SR
        i += 1
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")
    return path, " ".join(words)


@pytest.fixture(scope="module")
def three_minutes(sentences: list[tuple[np.ndarray, str]], tmp_path_factory: pytest.TempPathFactory):
    return speech_file(sentences, tmp_path_factory.mktemp("m3") / "three.wav", 180)


@pytest.fixture(scope="module")
def twenty_minutes(sentences: list[tuple[np.ndarray, str]], tmp_path_factory: pytest.TempPathFactory):
    return speech_file(sentences, tmp_path_factory.mktemp("m20") / "twenty.wav", 1200)


@pytest.fixture(scope="module")
def short_clips(sentences: list[tuple[np.ndarray, str]], tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("short")
    out = []
    for i, (audio, text) in enumerate(sentences[:12]):
        path = folder / f"c{i:02d}.wav"
        sf.write(str(path), audio, SR, subtype="PCM_16")
        out.append((path, text))
    return out


# --------------------------------------------------------------------------- bounded memory
def test_ten_hour_opus_bomb_gets_413_fast_in_bounded_memory(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bomb = silence_opus(tmp_path_factory.mktemp("bomb") / "ten-hours.opus", 36000)
    assert 8 * MB < bomb.stat().st_size < 16 * MB
    pid = server.proc.pid
    reset_peak(pid)
    before = status_of(pid, "VmRSS")
    t0 = time.perf_counter()
    r = transcribe(server, bomb, timeout=60)
    elapsed = time.perf_counter() - t0
    growth = status_of(pid, "VmHWM") - before
    print(f"10 h Opus bomb ({bomb.stat().st_size / MB:.1f} MB): {r.status_code} in {elapsed:.2f} s, "
          f"peak RSS growth {growth / MB:.1f} MB")  # fmt: skip
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long", r.text
    assert "36000 s" in r.json()["error"]["message"]
    assert elapsed < 2.0
    assert growth < 100 * MB


def test_content_length_over_the_limit_is_413_before_the_body(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
        )
        head, body = read_reply(s)  # no body was sent: the answer cannot have waited for it
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "upload_too_large"


def test_chunked_upload_past_the_limit_is_cut_off_as_it_streams(small: Server) -> None:
    host, port = small.url.removeprefix("http://").split(":")
    offered, sent, chunk = 64 * MB, 0, b"\0" * (256 * 1024)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
        )
        preamble = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(preamble), preamble))
        try:
            while sent < offered and not select.select([s], [], [], 0)[0]:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        head, body = read_reply(s)
    print(f"chunked upload, 2 MB limit: answered after {sent / MB:.1f} MB of {offered / MB:.0f} MB offered")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "upload_too_large"
    assert sent < 24 * MB  # the limit plus what the sockets' buffers took, far from the 64 MB offered


def test_six_near_limit_uploads_at_once_stay_bounded(
    server: Server, short_clips: list[tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    upload = silence_opus(tmp_path_factory.mktemp("flood") / "2.9-hours.opus", 10440)  # 2.9 h, ~4 MB
    pid = server.proc.pid
    reset_peak(pid)
    before = status_of(pid, "VmRSS")
    barrier = threading.Barrier(6)

    def one(_: int) -> tuple[httpx.Response, float]:
        barrier.wait(30)
        t0 = time.perf_counter()
        r = transcribe(server, upload, timeout=600)
        return r, time.perf_counter() - t0

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    peak = status_of(pid, "VmHWM")
    statuses = sorted(r.status_code for r, _ in results)
    samples = 10440 * SR * 4
    print(f"six 2.9 h uploads: statuses {statuses}, RSS before {before / MB:.0f} MB, peak {peak / MB:.0f} MB "
          f"({samples / MB:.0f} MB of samples each)")  # fmt: skip
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert set(statuses) <= {200, 503}
    for r, elapsed in results:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
            assert elapsed < 10.0  # refused at once, before any decoding
        else:
            assert r.json()["text"] == ""  # silence
    # 4 h admitted (TWI_ASR_MAX_QUEUED_AUDIO_S): one 2.9 h upload held at a time -> one copy of
    # its samples plus the decoder's and the VAD's working memory: 1.48x measured (README: "Memory")
    assert peak - before < 1.75 * samples, f"peak grew {(peak - before) / MB:.0f} MB"
    path, text = short_clips[0]
    r = transcribe(server, path)
    assert r.status_code == 200 and wer(text, r.json()["text"]) < MAX_WER


# --------------------------------------------------------------------------- fairness
def test_short_requests_are_not_starved_by_a_twenty_minute_upload(
    server: Server, short_clips: list[tuple[Path, str]], twenty_minutes: tuple[Path, str]
) -> None:
    def latencies(n: int, stop: threading.Event | None = None) -> list[float]:
        out: list[float] = []
        for i in range(n):
            if stop is not None and stop.is_set():
                break
            path, text = short_clips[i % len(short_clips)]
            t0 = time.perf_counter()
            r = transcribe(server, path)
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200 and wer(text, r.json()["text"]) < MAX_WER, r.text
        return out

    latencies(3)  # warm-up
    idle = latencies(20)
    done = threading.Event()
    long_result: dict[str, object] = {}

    def long_one() -> None:
        t0 = time.perf_counter()
        long_result["response"] = transcribe(server, twenty_minutes[0], timeout=900)
        long_result["wall"] = time.perf_counter() - t0
        done.set()

    worker = threading.Thread(target=long_one)
    worker.start()
    time.sleep(8.0)  # decoded and cut on silence: its pieces are in the engine now
    assert not done.is_set()
    busy = latencies(1000, stop=done)
    worker.join(900)
    long_r = long_result["response"]
    assert isinstance(long_r, httpx.Response) and long_r.status_code == 200
    long_wer = wer(twenty_minutes[1], long_r.json()["text"])
    print(f"idle p95 {p95(idle):.3f} s, busy p95 {p95(busy):.3f} s over {len(busy)} requests, "
          f"20-min upload {long_result['wall']:.1f} s (WER {long_wer:.3f})")  # fmt: skip
    assert len(busy) >= 10
    assert long_wer < MAX_WER
    # the benchmark holds the tight target (2x); here a margin for a loaded CI machine
    assert p95(busy) <= 4 * p95(idle) + 0.3, (idle, busy)


# --------------------------------------------------------------------------- streaming
def test_streaming_with_the_official_client(server: Server, three_minutes: tuple[Path, str]) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    t0 = time.perf_counter()
    deltas: list[tuple[float, str]] = []
    done = None
    with three_minutes[0].open("rb") as fh:
        for event in client.audio.transcriptions.create(model="whisper-1", file=fh, stream=True):
            if event.type == "transcript.text.delta":
                deltas.append((time.perf_counter() - t0, event.delta))
            else:
                assert event.type == "transcript.text.done"
                done = (time.perf_counter() - t0, event)
    assert done is not None and len(deltas) >= 3
    done_at, final = done
    print(f"3-min stream: {len(deltas)} deltas, first at {deltas[0][0]:.2f} s, done at {done_at:.2f} s")
    assert deltas[0][0] < 0.6 * done_at  # the first words well before the end, not all at once
    assert "".join(d for _, d in deltas) == final.text
    assert wer(three_minutes[1], final.text) < MAX_WER
    seconds = int(np.ceil(sf.info(str(three_minutes[0])).duration))
    assert final.usage is not None and final.usage.seconds == seconds  # type: ignore[union-attr]


def test_stream_errors_and_formats(
    server: Server, short_clips: list[tuple[Path, str]], tmp_path: Path
) -> None:
    path, _ = short_clips[0]
    r = transcribe(server, path, stream="true", response_format="srt")
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio\n" * 100)
    r = transcribe(server, notes, stream="true")
    assert r.status_code == 415 and r.json()["error"]["code"] == "invalid_audio"
    url = server.url + "/v1/audio/transcriptions"
    files = {"file": (path.name, path.read_bytes())}
    with httpx.stream("POST", url, timeout=60, files=files, data={"stream": "true"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0]["segments"] and events[1]["segments"][0]["start"] >= 0


def test_a_client_that_disconnects_has_its_queued_pieces_dropped(
    server: Server, twenty_minutes: tuple[Path, str]
) -> None:
    before = server_metric(server, "twi_asr_dropped_pieces_total")
    url, path = server.url + "/v1/audio/transcriptions", twenty_minutes[0]
    files = {"file": (path.name, path.read_bytes())}
    with httpx.stream("POST", url, timeout=120, files=files, data={"stream": "true"}) as r:
        for line in r.iter_lines():  # streamed: leave after the first words
            if line.startswith("data: "):
                break
    deadline = time.monotonic() + 30
    while server_metric(server, "twi_asr_dropped_pieces_total") <= before:
        assert time.monotonic() < deadline, "the stream's queued pieces were not dropped"
        time.sleep(0.2)
    after_stream = server_metric(server, "twi_asr_dropped_pieces_total")
    with pytest.raises(httpx.ReadTimeout):  # plain request: the client gives up mid-queue
        transcribe(server, twenty_minutes[0], timeout=10)
    deadline = time.monotonic() + 30
    while server_metric(server, "twi_asr_dropped_pieces_total") <= after_stream:
        assert time.monotonic() < deadline, "the plain request's queued pieces were not dropped"
        time.sleep(0.2)
    dropped = server_metric(server, "twi_asr_dropped_pieces_total") - before
    print(f"dropped {dropped:.0f} queued pieces of two abandoned 20-min uploads")
    assert dropped >= 40  # ~44 pieces each; at most a batch or two ran before the client left
    deadline = time.monotonic() + 30  # and the engine is idle again: nothing runs for nobody
    while server_metric(server, "twi_asr_queue_depth") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# --------------------------------------------------------------------------- response fields
def test_usage_verbose_fields_logprobs_and_too_short(
    server: Server, short_clips: list[tuple[Path, str]], tmp_path: Path
) -> None:
    path, text = short_clips[1]
    seconds = sf.info(str(path)).duration
    body = transcribe(server, path).json()
    assert body["usage"] == {"type": "duration", "seconds": int(np.ceil(seconds))}
    verbose = transcribe(server, path, response_format="verbose_json").json()
    assert verbose["language_probability"] == pytest.approx(1.0)  # English-only model: forced
    for seg in verbose["segments"]:
        assert seg["avg_logprob"] < 0 and 0 <= seg["no_speech_prob"] <= 1 and seg["compression_ratio"] > 0
    files = {"file": (path.name, path.read_bytes())}
    r = httpx.post(
        server.url + "/v1/audio/transcriptions", timeout=60, files=files, data={"include[]": "logprobs"}
    )
    logprobs = r.json()["logprobs"]
    assert logprobs and all(p["logprob"] <= 0 for p in logprobs)
    assert bytes(b for p in logprobs for b in p["bytes"]).decode().strip() == r.json()["text"]
    blip = tmp_path / "blip.wav"
    sf.write(str(blip), np.full(800, 0.1, dtype=np.float32), SR)  # 0.05 s
    r = transcribe(server, blip)
    assert r.status_code == 400 and r.json()["error"]["code"] == "audio_too_short"
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
    r = transcribe(server, cut, response_format="verbose_json")
    assert r.status_code == 200 and any("ends early" in w for w in r.json()["warnings"]), r.json()
    assert wer(text, transcribe(server, path).json()["text"]) < MAX_WER
