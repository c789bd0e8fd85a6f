"""``twi-asr serve`` as deployed: a real uvicorn process on a loopback port with the real tiny.en
weights, driven by the official ``openai`` client, httpx and the ``twi-asr transcribe --server`` CLI.

Two server processes shared by the module: the default one (batching on, no key) and a
``limited`` one (API key from ``TWI_ASR_API_KEY``, tiny upload/duration limits, a queue of one);
two throw-away ones get SIGTERM (one in the middle of a request, with ``--api-key``). Speech is
espeak-ng English with known text, so every answer is checked against what was said (WER), not
just for a 200.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from twi_asr import __version__
from twi_asr.text import wer

from .conftest import Clip, speak
from .services import EASY_SENTENCES, Server, free_port, metric, start_server, stop_server

pytestmark = pytest.mark.slow

MAX_WER = 0.35
API_KEY = "integration-test-key"
SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n(.+)$", re.S)
VTT_CUE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n(.+)$", re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Default flags: batching on (8 clips, 20 ms), no API key."""
    srv = start_server(tmp_path_factory.mktemp("server") / "stderr.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Key from the environment, 0.2 MB uploads, 1 s of audio, a queue of one, no batching."""
    srv = start_server(
        tmp_path_factory.mktemp("limited") / "stderr.log",
        "--max-upload-mb", "0.2", "--max-audio-s", "1", "--max-queue", "1", "--max-batch-size", "1",
        env={"TWI_ASR_API_KEY": API_KEY},
    )  # fmt: skip
    yield srv
    stop_server(srv)


def openai_client(server: Server, api_key: str = "x", **kwargs: Any) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, **kwargs)


def assert_error_body(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert r.headers.get("x-request-id")


# --------------------------------------------------------------------------- speech
@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """32 clips of 2-6 s, each a different sentence."""
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: install it (apt-get install {tool})")
    folder = tmp_path_factory.mktemp("server-speech")
    with ThreadPoolExecutor(2) as pool:
        jobs = enumerate(EASY_SENTENCES)
        paths = list(pool.map(lambda it: speak(it[1], folder / f"s{it[0]:02d}.wav"), jobs))
    return [Clip(p, t) for p, t in zip(paths, EASY_SENTENCES, strict=True)]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Under a second of speech: fits the ``limited`` server's 1 s limit."""
    path = speak("Hello.", tmp_path_factory.mktemp("short") / "hello.wav")
    assert sf.info(str(path)).duration < 0.95
    return path


@pytest.fixture(scope="module")
def long_request_clip(clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """About 20 s: six sentences with 0.4 s of silence between them (a request that takes a while)."""
    parts = [clips[i] for i in (9, 10, 11, 12, 13, 14)]
    gap = np.zeros(int(0.4 * 16000), dtype=np.float32)
    audio = np.concatenate([x for c in parts for x in (sf.read(str(c.path), dtype="float32")[0], gap)])
    path = tmp_path_factory.mktemp("long-request") / "twenty.wav"
    sf.write(str(path), audio, 16000, subtype="PCM_16")
    assert 15.0 < len(audio) / 16000 < 30.0
    return Clip(path, " ".join(c.text for c in parts))


# =========================================================================== the openai client
@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_client_every_response_format(server: Server, clips: list[Clip], fmt: str) -> None:
    clip = clips[0]
    with clip.path.open("rb") as f:
        result = openai_client(server).audio.transcriptions.create(
            model="whisper-1", file=f, response_format=fmt
        )
    if fmt == "json":
        text = result.text
    elif fmt == "text":
        assert isinstance(result, str)
        text = result
    elif fmt == "srt":
        blocks = result.strip().split("\n\n")
        cues = [SRT_CUE.match(b) for b in blocks]
        assert blocks and all(cues), result
        text = " ".join(m.group(1) for m in cues if m)
    elif fmt == "vtt":
        header, *blocks = result.strip().split("\n\n")
        assert header == "WEBVTT"
        cues = [VTT_CUE.match(b) for b in blocks]
        assert blocks and all(cues), result
        text = " ".join(m.group(1) for m in cues if m)
    else:
        assert result.language == "english"
        assert result.duration == pytest.approx(sf.info(str(clip.path)).duration, abs=0.05)
        assert result.segments and result.segments[0].start >= 0.0
        text = result.text
    assert wer(clip.text, text) < MAX_WER, text


def test_openai_client_word_timestamps(server: Server, clips: list[Clip]) -> None:
    clip = clips[2]
    with clip.path.open("rb") as f:
        result = openai_client(server).audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    words = result.words
    assert words and wer(clip.text, " ".join(w.word for w in words)) < MAX_WER
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= result.duration + 0.01 for w in words)
    assert words[-1].end > 0.5 * result.duration
    assert all(seg.model_extra.get("words") for seg in result.segments)  # also per segment


def test_openai_client_translation_of_english(server: Server, clips: list[Clip]) -> None:
    clip = clips[3]
    with clip.path.open("rb") as f:
        result = openai_client(server).audio.translations.create(model="whisper-1", file=f)
    assert wer(clip.text, result.text) < MAX_WER, result.text  # an English-only model: English text


# =========================================================================== concurrency
def test_32_concurrent_requests_are_batched_and_not_mixed_up(server: Server, clips: list[Clip]) -> None:
    before = httpx.get(server.url + "/metrics").text
    client = openai_client(server, timeout=120)
    start = threading.Barrier(len(clips))

    def one(clip: Clip) -> str:
        data = clip.path.read_bytes()
        start.wait(30)
        return client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, data)).text

    with ThreadPoolExecutor(len(clips)) as pool:
        texts = list(pool.map(one, clips))
    after = httpx.get(server.url + "/metrics").text

    batches = metric(after, "twi_asr_batch_size_count") - metric(before, "twi_asr_batch_size_count")
    batched = metric(after, "twi_asr_batch_size_sum") - metric(before, "twi_asr_batch_size_sum")
    singles = metric(after, 'twi_asr_batch_size_bucket{le="1.0"}') - metric(
        before, 'twi_asr_batch_size_bucket{le="1.0"}'
    )
    assert batched == len(clips)  # every request went through the engine exactly once
    assert batches < len(clips) and singles < batches, (batches, singles)  # batches of more than one
    assert metric(after, "twi_asr_queue_depth") == 0

    # No mix-ups: each answer is far closer to its own sentence than to any other one. (A batched
    # clip is decoded in a window padded to its batch's longest clip, so the odd sentence can read
    # differently in different company: accuracy is checked overall.)
    refs = [c.text for c in clips]
    own = [wer(r, t) for r, t in zip(refs, texts, strict=True)]
    for i, text in enumerate(texts):
        others = min(wer(r, text) for j, r in enumerate(refs) if j != i)
        assert own[i] < 0.5 * others, (refs[i], text, own[i], others)
    assert sum(w < MAX_WER for w in own) >= 28, list(zip(refs, texts, own, strict=True))
    assert wer(refs, texts) < 0.2, list(zip(refs, texts, strict=True))


# =========================================================================== errors and limits
def test_bad_inputs_get_their_status_and_code_and_never_take_the_server_down(
    server: Server, clips: list[Clip], tmp_path: Path
) -> None:
    good = clips[4].path.read_bytes()
    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    header_only = buf.getvalue()
    url = server.url + "/v1/audio/transcriptions"
    cases: list[tuple[dict[str, Any], dict[str, Any], int, str]] = [
        ({"file": ("notes.wav", b"Meeting notes, not audio.\n" * 50)}, {}, 415, "invalid_audio"),
        ({"file": ("noise.mp3", bytes(range(256)) * 40)}, {}, 415, "invalid_audio"),
        ({"file": ("cut.wav", good[:30])}, {}, 415, "invalid_audio"),  # cut inside the header
        ({"file": ("header.wav", header_only)}, {}, 422, "invalid_audio"),  # a header, no samples
        ({"file": ("half.wav", good[: len(good) // 3] + os.urandom(2000))}, {}, 200, ""),  # still audio
        ({"file": ("empty.wav", b"")}, {}, 422, "empty_file"),
        ({}, {"response_format": "json"}, 422, "missing_field"),
        ({"file": ("speech.wav", good)}, {"language": "klingon"}, 400, "invalid_option"),
        ({"file": ("speech.wav", good)}, {"response_format": "docx"}, 422, "invalid_field"),
    ]
    with httpx.Client(timeout=60) as http:
        for files, data, status, code in cases:
            r = http.post(url, files=files or None, data=data)
            if status == 200:
                assert r.status_code == 200, r.text
            else:
                assert_error_body(r, status, code)
            assert http.get(server.url + "/health").status_code == 200
        r = http.post(url, files={"file": ("speech.wav", good)}, data={"response_format": "text"})
        assert r.status_code == 200 and wer(clips[4].text, r.text) < MAX_WER
    assert server.proc.poll() is None


def test_upload_too_large(limited: Server, clips: list[Clip], tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = limited.url + "/v1/audio/transcriptions"
    big = np.concatenate([sf.read(str(c.path), dtype="float32")[0] for c in clips[:4]])  # > 10 s
    for seconds in (7.5, 12.0):  # 240 kB (caught in the route) and 384 kB (by Content-Length)
        path = tmp_path / f"big{seconds}.wav"
        sf.write(str(path), big[: int(seconds * 16000)], 16000, subtype="PCM_16")
        r = httpx.post(url, files={"file": path.open("rb")}, headers=auth, timeout=60)
        assert_error_body(r, 413, "upload_too_large")
    assert httpx.get(limited.url + "/ready").status_code == 200


def test_audio_too_long(limited: Server, clips: list[Clip]) -> None:
    r = httpx.post(
        limited.url + "/v1/audio/transcriptions",
        files={"file": clips[0].path.open("rb")},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert_error_body(r, 413, "audio_too_long")
    assert "1 s" in r.json()["error"]["message"]


def test_saturation_gives_503_with_retry_after_then_recovers(limited: Server, short_clip: Path) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = limited.url + "/v1/audio/transcriptions"
    data = short_clip.read_bytes()
    n = 12
    start = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        start.wait(30)
        return httpx.post(url, files={"file": ("hello.wav", data)}, headers=auth, timeout=60)

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(one, range(n)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    for r in responses:
        if r.status_code == 503:
            assert_error_body(r, 503, "queue_full")
            assert int(r.headers["retry-after"]) >= 1
        else:
            assert "hello" in r.json()["text"].lower()
    deadline = time.monotonic() + 20
    while httpx.get(limited.url + "/ready").status_code != 200:
        assert time.monotonic() < deadline, "/ready never came back to 200"
        time.sleep(0.1)
    r = httpx.post(url, files={"file": ("hello.wav", data)}, headers=auth, timeout=60)
    assert r.status_code == 200 and "hello" in r.json()["text"].lower()


# =========================================================================== auth
def test_auth_on_with_key_from_environment(limited: Server, short_clip: Path) -> None:
    url = limited.url + "/v1/audio/transcriptions"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        assert_error_body(httpx.get(limited.url + "/v1/models", headers=headers), 401, "invalid_api_key")
        r = httpx.post(url, files={"file": short_clip.open("rb")}, headers=headers, timeout=60)
        assert_error_body(r, 401, "invalid_api_key")
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(limited.url + path).status_code == 200, path
    with short_clip.open("rb") as f:
        result = openai_client(limited, api_key=API_KEY).audio.transcriptions.create(
            model="whisper-1", file=f
        )
    assert "hello" in result.text.lower()
    with pytest.raises(openai.AuthenticationError), short_clip.open("rb") as f:
        openai_client(limited, api_key="wrong").audio.transcriptions.create(model="whisper-1", file=f)


def test_auth_off_needs_no_header(server: Server, short_clip: Path) -> None:
    assert httpx.get(server.url + "/v1/models").status_code == 200
    r = httpx.post(server.url + "/v1/audio/translations", files={"file": short_clip.open("rb")}, timeout=60)
    assert r.status_code == 200


# =========================================================================== metadata
def test_models_card(server: Server) -> None:
    (card,) = openai_client(server).models.list().data
    extra = card.model_extra
    assert card.id == "tiny.en"
    assert extra["engine"] == "ctranslate2" and extra["device"] == "cpu"
    assert re.fullmatch(r"[0-9a-f]{8,}", extra["weights_hash"]), extra
    assert extra["twi_asr_version"] == __version__


def test_request_id_on_every_response(server: Server, clips: list[Clip]) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        responses = [
            http.get("/health"),
            http.get("/ready"),
            http.get("/metrics"),
            http.get("/v1/models"),
            http.get("/no/such/route"),
            http.post("/v1/audio/transcriptions", files={"file": ("e.wav", b"")}),
            http.post("/v1/audio/transcriptions", files={"file": clips[5].path.open("rb")}),
        ]
        ids = [r.headers.get("x-request-id") for r in responses]
        assert all(ids) and len(set(ids)) == len(ids), ids
        echoed = http.post(
            "/v1/audio/transcriptions",
            files={"file": ("e.wav", b"")},
            headers={"X-Request-ID": "trace-abc-123"},
        )
        assert echoed.headers["x-request-id"] == "trace-abc-123"
        assert echoed.json()["error"]["request_id"] == "trace-abc-123"
        assert http.get("/health", headers={"X-Request-ID": "h1"}).headers["x-request-id"] == "h1"
    assert "trace-abc-123" in server.log.read_text()  # the id is in the server's log line too


def test_docs_and_openapi(server: Server) -> None:
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["info"]["version"] == __version__
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/health", "/ready",
                 "/metrics"):  # fmt: skip
        assert path in spec["paths"], path
    form = spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()


# =========================================================================== twi-asr transcribe --server
def twi_asr(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWI_ASR_")}
    env["TWI_ASR_NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "twi_asr", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def test_cli_server_writes_what_local_writes(server: Server, clips: list[Clip], tmp_path: Path) -> None:
    good = [clips[i] for i in (6, 7, 8)]
    folder = tmp_path / "in"
    folder.mkdir()
    for c in good:
        shutil.copy(c.path, folder / c.path.name)
    (folder / "broken.wav").write_text("not audio\n" * 50)
    local, remote = tmp_path / "local", tmp_path / "remote"
    base = ["transcribe", folder, "-f", "json,txt", "--model", "tiny.en"]
    p_local = twi_asr(*base, "-o", local)
    p_remote = twi_asr(*base, "-o", remote, "--server", server.url)
    assert p_local.returncode == p_remote.returncode == 1, (p_local.stderr, p_remote.stderr)
    assert "broken.wav" in p_remote.stderr and "Traceback" not in p_remote.stderr
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in remote.iterdir())
    assert len(names) == 6  # json + txt for the three good clips, nothing for broken.wav
    for name in names:
        if name.endswith(".json"):
            a, b = json.loads((local / name).read_text()), json.loads((remote / name).read_text())
            assert a["text"] == b["text"], name
            assert a["language"] == b["language"] == "en"
            assert [s["text"] for s in a["segments"]] == [s["text"] for s in b["segments"]]
        else:
            assert (local / name).read_text() == (remote / name).read_text()
    by_stem = {c.path.stem: c.text for c in good}
    for name in names:
        if name.endswith(".txt"):
            assert wer(by_stem[name[:-4]], (remote / name).read_text()) < MAX_WER


def test_cli_server_unreachable_is_exit_3(clips: list[Clip]) -> None:
    proc = twi_asr("transcribe", clips[0].path, "--server", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "no twi-asr server answers" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_server_auth(limited: Server, short_clip: Path) -> None:
    proc = twi_asr("transcribe", short_clip, "--server", limited.url, timeout=60)
    assert proc.returncode == 3 and "--api-key" in proc.stderr, proc.stderr
    proc = twi_asr("transcribe", short_clip, "--server", limited.url, "--api-key", API_KEY, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "hello" in proc.stdout.lower()


def test_cli_server_refusing_one_clip_keeps_the_others(
    limited: Server, short_clip: Path, clips: list[Clip], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(short_clip, folder / "a_short.wav")
    shutil.copy(clips[0].path, folder / "b_long.wav")  # over the server's 1 s limit
    out = tmp_path / "out"
    proc = twi_asr("transcribe", folder, "-o", out, "--server", limited.url, "--api-key", API_KEY, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert (out / "a_short.txt").is_file(), proc.stderr
    assert "b_long.wav" in proc.stderr


# =========================================================================== graceful shutdown
def test_sigterm_lets_the_request_in_flight_finish(
    tmp_path: Path, long_request_clip: Clip, short_clip: Path
) -> None:
    srv = start_server(tmp_path / "stderr.log", "--api-key", API_KEY)
    try:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        r = httpx.post(
            srv.url + "/v1/audio/transcriptions", files={"file": short_clip.open("rb")}, timeout=60
        )
        assert_error_body(r, 401, "invalid_api_key")  # --api-key works like the variable
        result: dict[str, Any] = {}

        def send() -> None:
            try:
                result["response"] = httpx.post(
                    srv.url + "/v1/audio/transcriptions",
                    files={"file": long_request_clip.path.open("rb")},
                    data={"response_format": "json"},
                    headers=auth,
                    timeout=120,
                )
            except Exception as exc:  # reported by the assertions below
                result["error"] = exc

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 30
        # the audio is decoded and handed to the engine: the request is in flight
        while metric(httpx.get(srv.url + "/metrics").text, "twi_asr_audio_duration_seconds_count") < 1:
            assert time.monotonic() < deadline and sender.is_alive(), result
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        sender.join(120)
        assert "error" not in result, result
        response = result["response"]
        assert response.status_code == 200, response.text
        assert wer(long_request_clip.text, response.json()["text"]) < MAX_WER, response.text
        srv.proc.wait(30)  # gone soon after, cleanly (exit status: see the next test)
        log = srv.log_tail()
        assert "Application shutdown complete" in log and "Traceback" not in log, log
        assert srv.proc.returncode in (0, -signal.SIGTERM), log
    finally:
        stop_server(srv)


def test_sigterm_exit_status_is_0(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "stderr.log")
    try:
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0, srv.log_tail()
    finally:
        stop_server(srv)
