"""Typed HTTP client of the twi-asr server (and of any OpenAI-compatible transcription API).

Used by ``twi-asr transcribe --server URL`` and the batch runner. It speaks
the OpenAI multipart shape, asks for ``verbose_json`` and rebuilds a
:class:`~twi_asr.types.Transcript`, so a remote result is the same object as
a local one. Busy servers (503 + Retry-After) and dropped connections are
retried with backoff; other failures map onto the :mod:`twi_asr.errors` tree.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import AudioError, EnvironmentProblem, InputError, TwiAsrError, UsageError
from .languages import language_code
from .types import Segment, TranscribeOptions, Transcript, Word

__all__ = [
    "RemoteTranscriber",
    "ServerError",
    "ServerTimeout",
    "ServerUnavailable",
    "TwiAsrClient",
    "form_fields",
    "transcript_from_verbose",
]


class ServerError(TwiAsrError):
    """The server answered with an error the client cannot fix by retrying."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"server error {status} ({code}): {message}")
        self.status = status
        self.code = code


class ServerUnavailable(EnvironmentProblem):
    """The server could not be reached, dropped the connection, or kept answering 5xx after retries.

    Distinct from an answer about the request (bad audio, bad option), so a
    caller with several servers knows to try another one with the same file.
    """

    code = "server_unavailable"


class ServerTimeout(EnvironmentProblem):
    """The server took the request but gave no answer within the client's timeout (not retried).

    Unlike :class:`ServerUnavailable`, sending the same file elsewhere may
    well time out again, so callers decide for themselves whether to.
    """

    code = "server_timeout"


class TwiAsrClient:
    """A small synchronous client: ``transcribe()``, ``health()``, ``ready()``, ``models()``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        transport: Any = None,
        connect_timeout: float | None = None,
    ) -> None:
        """``timeout`` bounds each read/write; ``connect_timeout`` (default: the same) bounds connecting."""
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--server {base_url!r}: expected a URL like http://localhost:8001")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._httpx = httpx
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout),
            transport=transport,
        )

    def __enter__(self) -> TwiAsrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --------------------------------------------------------------- calls
    def health(self) -> bool:
        """True when the server process answers."""
        try:
            return self._http.get("/health").status_code == 200
        except self._httpx.HTTPError:
            return False

    def ready(self) -> bool:
        """True when the model is loaded and the queue has room."""
        try:
            return self._http.get("/ready").status_code == 200
        except self._httpx.HTTPError:
            return False

    def readiness(self, *, timeout: float | None = None) -> tuple[bool, str]:
        """``(True, "ready")``, or ``(False, why)``: "connection refused", "503 loading: ..." (no retry)."""
        httpx = self._httpx
        try:
            kw = {"timeout": timeout} if timeout is not None else {}
            response = self._http.get("/ready", **kw)
        except httpx.TimeoutException:
            return False, f"no answer within {timeout or 'the timeout'} s"
        except httpx.ConnectError as exc:
            return False, "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return True, "ready"
        try:
            body = response.json()
            why = " ".join(str(body[k]) for k in ("status", "detail") if body.get(k))
        except (ValueError, AttributeError):
            why = response.text[:100]
        return False, f"{response.status_code} {why}".strip()

    def models(self) -> list[dict[str, Any]]:
        """The served model cards (id, source, engine, weights hash, version)."""
        return list(self._request("GET", "/v1/models").json()["data"])

    def transcribe(
        self,
        audio: bytes | str | Path | BinaryIO,
        options: TranscribeOptions | None = None,
        *,
        filename: str | None = None,
        request_id: str | None = None,
    ) -> Transcript:
        """Send one file (bytes, a path or a seekable binary file) and return its transcript.

        A path or a file object is streamed from disk in chunks, never read
        whole into memory, so an hour of audio costs the client no more than
        a second of it. ``request_id`` goes out as ``X-Request-ID`` (8001
        logs it and echoes it back), so one id follows a job through both
        servers' logs.
        """
        route, data = form_fields(options or TranscribeOptions())
        response = self.transcribe_raw(audio, data, filename=filename, request_id=request_id, route=route)
        return transcript_from_verbose(response.json())

    def transcribe_raw(
        self,
        audio: bytes | str | Path | BinaryIO,
        form: Mapping[str, Any],
        *,
        filename: str | None = None,
        request_id: str | None = None,
        route: str = "/v1/audio/transcriptions",
    ) -> Any:
        """POST ``audio`` with arbitrary OpenAI form fields; the :class:`httpx.Response` (2xx only).

        For callers that forward a request as it came (the backend's
        OpenAI-compatible route: ``response_format=srt`` and the like). Same
        retries and error mapping as :meth:`transcribe`; a file is rewound
        to where it started before every attempt.
        """
        headers = {"X-Request-ID": request_id} if request_id else None
        if isinstance(audio, (str, Path)):
            with Path(audio).open("rb") as fh:
                return self._post_file(route, fh, form, filename or Path(audio).name, headers)
        if isinstance(audio, (bytes, bytearray, memoryview)):
            files = {"file": (filename or "audio.wav", bytes(audio), "application/octet-stream")}
            return self._request("POST", route, data=dict(form), files=files, headers=headers)
        name = filename or Path(str(getattr(audio, "name", "") or "audio.wav")).name
        return self._post_file(route, audio, form, name, headers)

    def _post_file(
        self, route: str, fh: BinaryIO, form: Mapping[str, Any], filename: str, headers: dict[str, str] | None
    ) -> Any:
        start = fh.tell()
        files = {"file": (filename, fh, "application/octet-stream")}
        return self._request(
            "POST", route, data=dict(form), files=files, headers=headers, rewind=lambda: fh.seek(start)
        )

    # ------------------------------------------------------------ plumbing
    def _request(
        self, method: str, url: str, *, rewind: Callable[[], object] | None = None, **kwargs: Any
    ) -> Any:
        httpx = self._httpx
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if rewind is not None:
                rewind()
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.ConnectTimeout as exc:  # never connected: as safe to retry as a refusal
                last = exc
                if attempt < self.retries:
                    self._sleep(attempt, None)
                continue
            except httpx.TimeoutException as exc:
                raise ServerTimeout(f"{self.base_url}{url}: no answer in time ({exc})") from exc
            except httpx.TransportError as exc:  # refused, reset, or the server died mid-upload
                last = exc
                if attempt < self.retries:
                    self._sleep(attempt, None)
                continue
            if response.status_code == 503 and attempt < self.retries:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        why = f"{type(last).__name__}: {last}" if last is not None else "busy (503) after every retry"
        raise ServerUnavailable(f"cannot reach the twi-asr server at {self.base_url} ({why})")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 30.0)
        else:
            delay = self.backoff_s * (2**attempt)
        time.sleep(delay * (1 + random.random() * 0.1))


def form_fields(options: TranscribeOptions) -> tuple[str, dict[str, Any]]:
    """The route and the OpenAI form fields asking for ``verbose_json`` with these options."""
    data: dict[str, Any] = {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "beam_size": str(options.beam_size),
    }
    temps = options.temperatures
    data["temperature"] = "0" if (len(temps) > 1 and temps[0] == 0.0) else str(temps[0])
    if options.language and options.task == "transcribe":
        data["language"] = options.language
    if options.initial_prompt:
        data["prompt"] = options.initial_prompt
    if options.word_timestamps:
        data["timestamp_granularities[]"] = ["word", "segment"]
    route = "/v1/audio/translations" if options.task == "translate" else "/v1/audio/transcriptions"
    return route, data


def _error_from(response: Any) -> TwiAsrError:
    """The error for a 4xx/5xx answer; it keeps the server's ``status``, ``server_code`` and message.

    The type says what kind of failure it is (bad audio, bad option, server
    down); the attributes keep the server's own stable code (``invalid_audio``,
    ``audio_too_long``...) for callers that pass it on, such as the backend.
    """
    try:
        err = response.json().get("error", {})
        code, message = str(err.get("code", "error")), str(err.get("message", response.text))
    except ValueError:
        code, message = "error", response.text[:200]
    status = response.status_code
    exc = _mapped(status, code, message)
    exc.status = status  # type: ignore[attr-defined]
    exc.server_code = code  # type: ignore[attr-defined]
    exc.server_message = message  # type: ignore[attr-defined]
    return exc


def _mapped(status: int, code: str, message: str) -> TwiAsrError:
    if status in (415, 422) and code in ("invalid_audio", "empty_file", "empty_audio"):
        return AudioError(message)
    if status == 413:
        return InputError(message)
    if status in (401, 403):
        return EnvironmentProblem(f"the server refused the API key ({message}): pass --api-key")
    if status == 400:
        return UsageError(message)
    if status >= 500:
        return ServerUnavailable(f"server error {status} ({code}): {message}")
    return ServerError(status, code, message)


def transcript_from_verbose(body: dict[str, Any]) -> Transcript:
    """A Transcript from an OpenAI ``verbose_json`` body (language names mapped back to codes)."""
    segments = []
    for i, s in enumerate(body.get("segments") or []):
        words = None
        if s.get("words") is not None:
            words = tuple(
                Word(
                    start=float(w["start"]),
                    end=float(w["end"]),
                    word=w["word"],
                    probability=w.get("probability"),
                )
                for w in s["words"]
            )
        segments.append(
            Segment(
                id=int(s.get("id", i)),
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]).strip(),
                words=words,
            )
        )
    if segments and segments[0].words is None and body.get("words"):  # words only at the top level
        flat = [
            Word(
                start=float(w["start"]), end=float(w["end"]), word=w["word"], probability=w.get("probability")
            )
            for w in body["words"]
        ]
        # half-open [start, end): a word on a boundary belongs to the later segment only
        segments = [
            Segment(
                id=s.id,
                start=s.start,
                end=s.end,
                text=s.text,
                words=tuple(
                    w
                    for w in flat
                    if s.start <= w.start < s.end or (i == len(segments) - 1 and w.start >= s.start)
                ),
            )
            for i, s in enumerate(segments)
        ]
    return Transcript(
        text=str(body.get("text", "")).strip(),
        language=language_code(body.get("language")) or body.get("language"),
        duration=float(body.get("duration", 0.0)),
        segments=tuple(segments),
        model=body.get("model"),
        engine=body.get("engine"),
    )


class RemoteTranscriber:
    """A :class:`~twi_asr.engines.base.Transcriber` that sends clips to a server.

    Clips of a batch go out concurrently (``batch_size`` requests in flight)
    so the server's batcher can gather them. Audio travels as lossless FLAC.
    """

    engine = "remote"
    device = "remote"

    def __init__(self, client: TwiAsrClient, *, batch_size: int = 8) -> None:
        self.client = client
        self.batch_size = max(1, batch_size)
        self.model_name = client.base_url
        self._pool = ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="twi-asr-client")

    def transcribe(
        self, audios: Sequence[np.ndarray], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Send every clip; results in input order."""
        payloads = [_flac(a) for a in audios]
        return list(
            self._pool.map(lambda p: self.client.transcribe(p, options, filename="clip.flac"), payloads)
        )


def _flac(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(
        buf, np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), 16000, format="FLAC", subtype="PCM_24"
    )
    return buf.getvalue()
