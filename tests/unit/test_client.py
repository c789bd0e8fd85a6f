"""Tests of the HTTP client (``twi_asr.client``) against ``httpx.MockTransport``: retries, error
mapping, the request it sends and the Transcript it rebuilds from ``verbose_json``.

``time.sleep`` is patched, so back-off costs nothing and every delay is recorded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

import twi_asr.client
from twi_asr.client import RemoteTranscriber, ServerError, TwiAsrClient, transcript_from_verbose
from twi_asr.errors import AudioError, EnvironmentProblem, InputError, UsageError
from twi_asr.types import TranscribeOptions, Transcript

Handler = Callable[[httpx.Request], httpx.Response]

VERBOSE = {
    "task": "transcribe",
    "language": "english",
    "duration": 3.5,
    "text": " Hello there. General Kenobi. ",
    "segments": [
        {
            "id": 0,
            "seek": 0,
            "start": 0.0,
            "end": 1.5,
            "text": " Hello there.",
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": 0.0,
            "compression_ratio": 0.0,
            "no_speech_prob": 0.0,
            "words": [
                {"word": "Hello", "start": 0.0, "end": 0.6, "probability": 0.9},
                {"word": "there.", "start": 0.6, "end": 1.5, "probability": 0.8},
            ],
        },
        {
            "id": 1,
            "start": 1.8,
            "end": 3.4,
            "text": "General Kenobi.",
            "words": [
                {"word": "General", "start": 1.8, "end": 2.5, "probability": 0.7},
                {"word": "Kenobi.", "start": 2.5, "end": 3.4, "probability": 0.6},
            ],
        },
    ],
    "model": "tiny.en",
    "engine": "ctranslate2",
}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(twi_asr.client.time, "sleep", recorded.append)
    return recorded


class Recorder:
    """A MockTransport handler that answers from a list (the last answer repeats) and keeps requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(handler: Handler, **kwargs: Any) -> TwiAsrClient:
    return TwiAsrClient("http://asr.test:8001/", transport=httpx.MockTransport(handler), **kwargs)


def error(status: int, code: str, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def ok() -> httpx.Response:
    return httpx.Response(200, json=VERBOSE)


@pytest.fixture
def client_for() -> Iterator[Callable[..., TwiAsrClient]]:
    made: list[TwiAsrClient] = []

    def factory(handler: Handler, **kwargs: Any) -> TwiAsrClient:
        made.append(make_client(handler, **kwargs))
        return made[-1]

    yield factory
    for c in made:
        c.close()


def multipart_fields(request: httpx.Request) -> dict[str, list[str]]:
    """The form fields of a multipart request (file parts as their file name)."""
    ctype = request.headers["content-type"]
    boundary = ctype.split("boundary=")[1].encode()
    fields: dict[str, list[str]] = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode().split("\r\n")[0]
        name = disposition.split('name="')[1].split('"')[0]
        if 'filename="' in disposition:
            value = "file:" + disposition.split('filename="')[1].split('"')[0]
        else:
            value = body.decode()
        fields.setdefault(name, []).append(value)
    return fields


# --------------------------------------------------------------------------- retries
def test_retries_503_honouring_retry_after(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(
        error(503, "queue_full", **{"Retry-After": "2"}),
        error(503, "queue_full", **{"Retry-After": "7"}),
        ok(),
    )
    t = client_for(rec).transcribe(b"RIFF....")
    assert t.text == "Hello there. General Kenobi."
    assert len(rec.requests) == 3
    assert len(sleeps) == 2
    assert 2.0 <= sleeps[0] <= 2.2 and 7.0 <= sleeps[1] <= 7.7  # Retry-After plus at most 10 % jitter


def test_retry_after_is_capped_and_missing_means_backoff(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(
        error(503, "queue_full", **{"Retry-After": "3600"}),
        error(503, "not_ready"),
        error(503, "not_ready", **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        ok(),
    )
    client_for(rec, backoff_s=0.5).transcribe(b"x")
    assert 30.0 <= sleeps[0] <= 33.0  # never more than 30 s
    assert 1.0 <= sleeps[1] <= 1.1  # attempt 1: 0.5 * 2
    assert 2.0 <= sleeps[2] <= 2.2  # an HTTP date is not understood: back-off


def test_503_until_retries_run_out_is_an_environment_problem(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(error(503, "queue_full", "the server is busy", **{"Retry-After": "1"}))
    with pytest.raises(EnvironmentProblem, match="queue_full.*busy"):
        client_for(rec, retries=2).transcribe(b"x")
    assert len(rec.requests) == 3 and len(sleeps) == 2


def test_connection_errors_are_retried_then_environment_problem(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(httpx.ConnectError("connection refused"))
    with pytest.raises(EnvironmentProblem, match="cannot reach the twi-asr server at http://asr.test:8001"):
        client_for(rec, retries=3, backoff_s=0.5).transcribe(b"x")
    assert len(rec.requests) == 4
    assert [round(s, 1) for s in sleeps[:3]] == pytest.approx([0.5, 1.0, 2.0], abs=0.25)  # exponential


def test_no_sleep_after_the_last_attempt(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(httpx.ConnectError("connection refused"))
    with pytest.raises(EnvironmentProblem):
        client_for(rec, retries=3).transcribe(b"x")
    assert len(sleeps) == 3


def test_dropped_connection_then_success(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(httpx.RemoteProtocolError("server disconnected"), httpx.ReadError("reset"), ok())
    assert client_for(rec).transcribe(b"x").language == "en"
    assert len(rec.requests) == 3 and len(sleeps) == 2


def test_timeout_is_not_retried(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(httpx.ReadTimeout("timed out"))
    with pytest.raises(EnvironmentProblem, match="no answer in time"):
        client_for(rec).transcribe(b"x")
    assert len(rec.requests) == 1 and sleeps == []


# --------------------------------------------------------------------------- error mapping
@pytest.mark.parametrize(
    ("response", "exc", "text"),
    [
        (error(415, "invalid_audio", "notes.wav: not audio"), AudioError, "notes.wav: not audio"),
        (error(422, "empty_file", "the uploaded file is empty"), AudioError, "empty"),
        (error(422, "invalid_audio", "zero duration"), AudioError, "zero duration"),
        (error(413, "audio_too_long", "the audio is 9 s"), InputError, "9 s"),
        (error(413, "upload_too_large", "over 1 MB"), InputError, "1 MB"),
        (error(401, "invalid_api_key"), EnvironmentProblem, "--api-key"),
        (error(403, "forbidden"), EnvironmentProblem, "--api-key"),
        (error(400, "invalid_option", "unknown language 'xx'"), UsageError, "unknown language"),
        (error(500, "internal_error", "RuntimeError: boom"), EnvironmentProblem, "500.*boom"),
        (error(504, "timeout"), EnvironmentProblem, "504"),
        (error(404, "not_found", "no route"), ServerError, "404.*not_found"),
        (httpx.Response(502, text="<html>bad gateway</html>"), EnvironmentProblem, "bad gateway"),
    ],
)
def test_errors_map_onto_the_error_tree(
    client_for: Any, sleeps: list[float], response: httpx.Response, exc: type[Exception], text: str
) -> None:
    rec = Recorder(response)
    with pytest.raises(exc, match=text) as info:
        client_for(rec).transcribe(b"x")
    assert len(rec.requests) == 1 and sleeps == []  # none of these is worth a retry
    if isinstance(info.value, ServerError):
        assert info.value.status == 404 and info.value.code == "not_found"


def test_exit_codes_of_mapped_errors() -> None:
    assert AudioError("x").exit_code == 1 and InputError("x").exit_code == 1
    assert EnvironmentProblem("x").exit_code == 3 and UsageError("x").exit_code == 2


# --------------------------------------------------------------------------- what is sent
def test_request_shape_for_transcribe(client_for: Any) -> None:
    rec = Recorder(ok())
    options = TranscribeOptions(language="en", initial_prompt="Kwame", word_timestamps=True, beam_size=2)
    client_for(rec, api_key="k3y").transcribe(b"RIFFdata", options, filename="a.flac")
    (req,) = rec.requests
    assert req.method == "POST" and req.url == "http://asr.test:8001/v1/audio/transcriptions"
    assert req.headers["authorization"] == "Bearer k3y"
    fields = multipart_fields(req)
    assert fields["file"] == ["file:a.flac"]
    assert fields["response_format"] == ["verbose_json"]
    assert fields["model"] == ["whisper-1"]
    assert fields["temperature"] == ["0"]  # the default ladder starts at 0
    assert fields["language"] == ["en"] and fields["prompt"] == ["Kwame"]
    assert fields["timestamp_granularities[]"] == ["word", "segment"]
    assert fields["beam_size"] == ["2"]  # the caller's decoding choice reaches the server


def test_server_dying_mid_upload_is_retried_then_server_unavailable(
    client_for: Any, sleeps: list[float]
) -> None:
    from twi_asr.client import ServerUnavailable

    rec = Recorder(httpx.WriteError("broken pipe"), ok())
    assert client_for(rec).transcribe(b"x").language == "en"
    rec = Recorder(httpx.WriteError("broken pipe"))
    with pytest.raises(ServerUnavailable, match=r"WriteError: broken pipe") as info:
        client_for(rec, retries=1).transcribe(b"x")
    assert info.value.exit_code == 3 and isinstance(info.value, EnvironmentProblem)
    rec = Recorder(error(500, "internal_error", "boom"))
    with pytest.raises(ServerUnavailable, match="internal_error"):
        client_for(rec).transcribe(b"x")


def test_request_shape_for_translate_and_single_temperature(client_for: Any, tmp_path: Any) -> None:
    rec = Recorder(ok())
    path = tmp_path / "speech.wav"
    path.write_bytes(b"RIFF")
    options = TranscribeOptions(task="translate", language="fr", temperatures=(0.4,))
    client_for(rec).transcribe(path, options)
    (req,) = rec.requests
    assert req.url.path == "/v1/audio/translations"
    assert "authorization" not in req.headers
    fields = multipart_fields(req)
    assert fields["file"] == ["file:speech.wav"]  # named after the path
    assert fields["temperature"] == ["0.4"]
    assert "language" not in fields  # translations have no language field
    assert "timestamp_granularities[]" not in fields


def test_bad_base_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="http://localhost:8001"):
        TwiAsrClient("localhost:8001")


def test_health_ready_models(client_for: Any, sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return {
            "/health": httpx.Response(200, json={"status": "ok"}),
            "/ready": httpx.Response(503, json={"status": "loading"}),
            "/v1/models": httpx.Response(200, json={"object": "list", "data": [{"id": "tiny.en"}]}),
        }[request.url.path]

    c = client_for(handler)
    assert c.health() is True and c.ready() is False
    assert c.models() == [{"id": "tiny.en"}]
    down = client_for(Recorder(httpx.ConnectError("refused")))
    assert down.health() is False and down.ready() is False


# --------------------------------------------------------------------------- verbose_json -> Transcript
def test_verbose_json_becomes_a_transcript(client_for: Any) -> None:
    t = client_for(Recorder(ok())).transcribe(b"x")
    assert isinstance(t, Transcript)
    assert t.language == "en"  # OpenAI's "english" back to the code
    assert t.text == "Hello there. General Kenobi."
    assert t.duration == 3.5 and t.model == "tiny.en" and t.engine == "ctranslate2"
    assert [(s.id, s.start, s.end, s.text) for s in t.segments] == [
        (0, 0.0, 1.5, "Hello there."),
        (1, 1.8, 3.4, "General Kenobi."),
    ]
    assert [w.word for w in t.words] == ["Hello", "there.", "General", "Kenobi."]
    assert t.segments[0].words is not None and t.segments[0].words[1].probability == 0.8


@pytest.mark.parametrize(("name", "code"), [("english", "en"), ("swahili", "sw"), ("yo", "yo")])
def test_language_names_map_to_codes(name: str, code: str) -> None:
    assert transcript_from_verbose({**VERBOSE, "language": name}).language == code


def test_unknown_language_is_kept() -> None:
    assert transcript_from_verbose({**VERBOSE, "language": "twi"}).language == "twi"


def test_top_level_words_are_attached_to_their_segments() -> None:
    body = json.loads(json.dumps(VERBOSE))
    words = [w for s in body["segments"] for w in s.pop("words")]
    body["words"] = words  # OpenAI puts words only at the top level
    t = transcript_from_verbose(body)
    assert [[w.word for w in s.words or ()] for s in t.segments] == [
        ["Hello", "there."],
        ["General", "Kenobi."],
    ]


def test_top_level_word_on_a_segment_boundary_is_kept_once() -> None:
    body = json.loads(json.dumps(VERBOSE))
    words = [w for s in body["segments"] for w in s.pop("words")]
    body["segments"][0]["end"] = body["segments"][1]["start"] = 1.8  # touching segments
    words[2]["start"] = 1.8  # "General" starts where segment 1 starts
    body["words"] = words
    t = transcript_from_verbose(body)
    assert [w.word for w in t.words] == ["Hello", "there.", "General", "Kenobi."]
    assert [w.probability for w in t.words] == [0.9, 0.8, 0.7, 0.6]


def test_no_words_without_word_timestamps() -> None:
    body = json.loads(json.dumps(VERBOSE))
    for s in body["segments"]:
        del s["words"]
    t = transcript_from_verbose(body)
    assert all(s.words is None for s in t.segments) and t.words == ()
    assert transcript_from_verbose({"text": "hi"}).segments == ()


# --------------------------------------------------------------------------- RemoteTranscriber
def file_part(request: httpx.Request) -> bytes:
    """The raw bytes of the multipart body's ``file`` part."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            assert body.endswith(b"\r\n")
            return body[:-2]
    raise AssertionError("no file part")


def test_remote_transcriber_sends_flac_and_keeps_order(client_for: Any) -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        data = file_part(request)
        assert data[:4] == b"fLaC"  # lossless, and smaller than WAV
        samples, rate = sf.read(io.BytesIO(data))
        assert rate == 16000
        seen.append(len(samples))
        return httpx.Response(200, json={**VERBOSE, "text": f"{len(samples)} samples", "segments": []})

    remote = RemoteTranscriber(client_for(handler), batch_size=3)
    lengths = [1600, 3200, 800, 4800, 2400]
    out = remote.transcribe([np.full(n, 0.25, dtype=np.float32) for n in lengths], TranscribeOptions())
    assert [t.text for t in out] == [f"{n} samples" for n in lengths]  # input order, whatever finished first
    assert sorted(seen) == sorted(lengths)
    assert remote.engine == "remote" and remote.model_name == "http://asr.test:8001"


def test_remote_transcriber_clips_loud_audio(client_for: Any) -> None:
    peaks: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        samples, _ = sf.read(io.BytesIO(file_part(request)))
        peaks.append(float(np.abs(samples).max()))
        return httpx.Response(200, json=VERBOSE)

    RemoteTranscriber(client_for(handler), batch_size=1).transcribe([np.full(1600, 3.0, dtype=np.float32)])
    assert peaks and 0.99 <= peaks[0] <= 1.0


# --------------------------------------------------------------------------- streaming, request ids, raw
class ChunkOnlyFile(io.BytesIO):
    """A file that refuses to be read whole: every read must ask for a bounded chunk."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []
        self.seeks: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and 0 < size <= 1 << 20, f"read({size}) would load the whole file"
        self.reads.append(size)
        return super().read(size)

    def seek(self, pos: int, whence: int = 0) -> int:
        self.seeks.append(pos)
        return super().seek(pos, whence)


def test_a_file_object_is_streamed_in_chunks(client_for: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    fh = ChunkOnlyFile(data)
    rec = Recorder(ok())
    t = client_for(rec).transcribe(fh, filename="big.wav")
    assert t.text == "Hello there. General Kenobi."
    (req,) = rec.requests
    assert file_part(req) == data and multipart_fields(req)["file"] == ["file:big.wav"]
    assert len(fh.reads) > 10  # 64 KiB at a time
    assert not fh.closed  # the caller's file stays the caller's


def test_a_file_object_is_rewound_before_every_retry(client_for: Any, sleeps: list[float]) -> None:
    data = b"RIFF" + b"\x01\x02" * 50_000
    fh = ChunkOnlyFile(data)
    rec = Recorder(httpx.WriteError("broken pipe"), error(503, "queue_full"), ok())
    client_for(rec).transcribe(fh, filename="a.wav")
    assert len(rec.requests) == 3
    assert all(file_part(r) == data for r in rec.requests)  # every attempt sent the whole file
    assert fh.seeks.count(0) >= 3


def test_a_path_is_streamed_not_read_whole(
    client_for: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    path = tmp_path / "ɔkɔmfoɔ.wav"
    path.write_bytes(b"RIFF" + b"\x00" * 200_000)

    def no_read_bytes(self: Path) -> bytes:
        raise AssertionError("read_bytes() loads the whole file")

    monkeypatch.setattr(Path, "read_bytes", no_read_bytes)
    rec = Recorder(ok())
    client_for(rec).transcribe(path)
    (req,) = rec.requests
    assert len(file_part(req)) == 200_004
    assert multipart_fields(req)["file"] == ["file:ɔkɔmfoɔ.wav"]  # named after the path, Twi letters kept


def test_request_id_is_sent_on_every_attempt(client_for: Any, sleeps: list[float]) -> None:
    rec = Recorder(httpx.ConnectError("refused"), ok())
    client_for(rec).transcribe(b"x", request_id="job_abc123")
    assert [r.headers["x-request-id"] for r in rec.requests] == ["job_abc123", "job_abc123"]
    rec = Recorder(ok())
    client_for(rec).transcribe(b"x")
    assert "x-request-id" not in rec.requests[0].headers


def test_transcribe_raw_forwards_any_form_and_returns_the_response(
    client_for: Any, sleeps: list[float]
) -> None:
    srt = "1\n00:00:00,000 --> 00:00:01,500\nMaakye\n"
    rec = Recorder(error(503, "queue_full", **{"Retry-After": "1"}), httpx.Response(200, text=srt))
    form = {"model": "whisper-1", "response_format": "srt", "timestamp_granularities[]": ["word"]}
    fh = io.BytesIO(b"RIFFdata")
    response = client_for(rec).transcribe_raw(fh, form, filename="a.wav", request_id="r1")
    assert isinstance(response, httpx.Response) and response.text == srt
    assert len(rec.requests) == 2 and all(file_part(r) == b"RIFFdata" for r in rec.requests)
    fields = multipart_fields(rec.requests[-1])
    assert fields["response_format"] == ["srt"] and fields["timestamp_granularities[]"] == ["word"]
    assert rec.requests[-1].url.path == "/v1/audio/transcriptions"
    assert rec.requests[-1].headers["x-request-id"] == "r1"


def test_transcribe_raw_maps_errors_and_keeps_the_server_code(client_for: Any) -> None:
    rec = Recorder(error(415, "invalid_audio", "notes.wav: not audio"))
    with pytest.raises(AudioError, match="not audio") as info:
        client_for(rec).transcribe_raw(b"text", {"model": "whisper-1"}, filename="notes.wav")
    assert info.value.server_code == "invalid_audio" and info.value.status == 415  # type: ignore[attr-defined]
    rec = Recorder(error(413, "audio_too_long", "the audio is 9 s"))
    with pytest.raises(InputError) as too_long:
        client_for(rec).transcribe(b"x")
    assert too_long.value.server_code == "audio_too_long"  # type: ignore[attr-defined]


def test_readiness_says_why(client_for: Any) -> None:
    ready = client_for(Recorder(httpx.Response(200, json={"status": "ready"})))
    assert ready.readiness(timeout=2) == (True, "ready")
    loading = client_for(Recorder(httpx.Response(503, json={"status": "loading", "detail": "loading tiny"})))
    assert loading.readiness() == (False, "503 loading loading tiny")
    down = client_for(Recorder(httpx.ConnectError("[Errno 111] Connection refused")))
    assert down.readiness() == (False, "connection refused")
    slow = client_for(Recorder(httpx.ReadTimeout("timed out")))
    assert slow.readiness(timeout=2) == (False, "no answer within 2 s")


def test_a_timeout_is_a_server_timeout() -> None:
    from twi_asr.client import ServerTimeout, ServerUnavailable

    assert issubclass(ServerTimeout, EnvironmentProblem) and not issubclass(ServerTimeout, ServerUnavailable)


def test_a_connect_timeout_is_retried_like_a_refusal(client_for: Any, sleeps: list[float]) -> None:
    from twi_asr.client import ServerUnavailable

    rec = Recorder(httpx.ConnectTimeout("connect timed out"), ok())
    assert client_for(rec, connect_timeout=5).transcribe(b"x").language == "en"
    assert len(rec.requests) == 2 and len(sleeps) == 1
    with pytest.raises(ServerUnavailable, match="ConnectTimeout"):
        client_for(Recorder(httpx.ConnectTimeout("connect timed out")), retries=1).transcribe(b"x")
