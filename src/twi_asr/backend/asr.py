"""The backend's calls to the inference servers (8001): retries on one server, failover across several.

One :class:`~twi_asr.client.TwiAsrClient` per URL does the retries on its
server (busy 503s, dropped connections). :class:`AsrPool` adds the choice of
server: those that answered last time first, round-robin among them, then
the ones that failed (a failed server is tried first again after
``recheck_s``, so a restarted server gets work back). Failures are sorted
into two kinds, because the worker treats them differently:

* :class:`AsrUnavailable` (503): no server could be reached. The file is
  fine; the job goes back to the queue for later.
* :class:`AsrRejected`: a server answered that the *input* is wrong (not
  audio, too long, a bad option). Another server would say the same, so it is
  not retried; the job fails with the server's stable code (``invalid_audio``).

The pool is shared by the worker threads: its only shared state (the
round-robin counter and each server's last outcome) sits behind a lock, and
httpx clients are thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..client import ServerError, ServerTimeout, TwiAsrClient, form_fields
from ..errors import EnvironmentProblem, InputError, UsageError
from ..types import TranscribeOptions, Transcript
from .errors import BackendError

__all__ = ["AsrPool", "AsrRaw", "AsrRejected", "AsrResult", "AsrUnavailable", "options_from"]

log = logging.getLogger("twi_asr.backend.asr")
T = TypeVar("T")


class AsrUnavailable(BackendError):
    """No inference server could be reached or kept answering 5xx (503): try the job again later."""

    status, code, kind = 503, "asr_unavailable", "server_error"

    def __init__(self, message: str, *, reasons: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "5"})
        self.reasons = dict(reasons or {})


class AsrRejected(BackendError):
    """An inference server refused the input itself; ``code`` is its stable code (``invalid_audio``).

    ``status`` is the server's HTTP status (415, 422, 413, 400...), so the
    OpenAI-compatible route can answer exactly as 8001 would.
    """

    status, code, kind = 422, "invalid_request", "invalid_request_error"

    def __init__(self, code: str, message: str, *, status: int = 422, server: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.server = server


@dataclass(frozen=True)
class AsrResult:
    """A transcription: the Transcript, the server's ``verbose_json`` body, who did it and how long."""

    transcript: Transcript
    body: dict[str, Any]
    server: str
    seconds: float


@dataclass(frozen=True)
class AsrRaw:
    """A passthrough answer (any ``response_format``): the :class:`httpx.Response`, server, seconds."""

    response: Any
    server: str
    seconds: float


@dataclass
class _Server:
    url: str
    client: TwiAsrClient
    down_since: float | None = None  # monotonic time of the last failure; None: answered last time
    last_error: str = field(default="")


def options_from(options: Mapping[str, Any]) -> TranscribeOptions:
    """Decoding options from a job's option dict (language, prompt, word_timestamps, task, beam_size).

    Other keys are ignored (a job's options also hold things 8001 never
    sees); a bad value is :class:`AsrRejected` ``invalid_option`` (400).
    """
    words = options.get("word_timestamps", False)
    if isinstance(words, str):
        words = words.strip().lower() in ("1", "true", "yes", "on")
    try:
        beam = options.get("beam_size")
        return TranscribeOptions(
            language=(options.get("language") or None),
            task=options.get("task") or "transcribe",
            beam_size=int(beam) if beam not in (None, "") else 5,
            initial_prompt=(options.get("prompt") or None),
            word_timestamps=bool(words),
        )
    except (UsageError, ValueError, TypeError) as exc:
        raise AsrRejected("invalid_option", str(exc), status=400) from exc


class AsrPool:
    """Every configured 8001 server, with failover; one instance shared by all worker threads."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api_key: str | None = None,
        timeout_s: float = 3600.0,
        connect_timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        recheck_s: float = 30.0,
        ready_timeout_s: float = 2.0,
        transport: Any = None,
    ) -> None:
        if not urls:
            raise UsageError("no ASR server configured: set TWI_ASR_ASR_URL (comma-separated URLs)")
        self.recheck_s = recheck_s
        self.ready_timeout_s = ready_timeout_s
        self._servers = [
            _Server(
                url.rstrip("/"),
                TwiAsrClient(
                    url,
                    api_key=api_key,
                    timeout=timeout_s,
                    connect_timeout=connect_timeout_s,
                    retries=retries,
                    backoff_s=backoff_s,
                    transport=transport,
                ),
            )
            for url in urls
        ]
        self._lock = threading.Lock()
        self._turn = 0

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> AsrPool:
        """A pool for ``settings.asr_url`` with ``asr_api_key`` and ``asr_timeout_s``."""
        key = settings.asr_api_key.get_secret_value() if settings.asr_api_key else None
        kwargs.setdefault("timeout_s", settings.asr_timeout_s)
        return cls(list(settings.asr_url), api_key=key, **kwargs)

    @property
    def urls(self) -> list[str]:
        """The servers, in configuration order."""
        return [s.url for s in self._servers]

    def close(self) -> None:
        """Close every connection pool."""
        for server in self._servers:
            server.client.close()

    def __enter__(self) -> AsrPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ calls
    def transcribe(
        self, path: Path, options: Mapping[str, Any], *, filename: str, request_id: str
    ) -> AsrResult:
        """Transcribe the file at ``path`` (streamed, never read whole) as ``verbose_json``.

        Raises :class:`AsrUnavailable` when no server could do it and
        :class:`AsrRejected` when a server refused the input.
        """
        from ..client import transcript_from_verbose

        route, form = form_fields(options_from(options))

        def call(client: TwiAsrClient) -> Any:
            return client.transcribe_raw(path, form, filename=filename, request_id=request_id, route=route)

        response, server, seconds = self._failover(call, request_id)
        try:
            body = response.json()
        except ValueError as exc:
            raise AsrRejected(
                "invalid_asr_response", f"{server} answered non-JSON: {exc}", status=502, server=server
            ) from exc
        return AsrResult(transcript_from_verbose(body), body, server, seconds)

    def transcribe_raw(
        self,
        audio: bytes | Path | BinaryIO,
        form: Mapping[str, Any],
        *,
        filename: str,
        request_id: str | None = None,
        route: str = "/v1/audio/transcriptions",
    ) -> AsrRaw:
        """POST any OpenAI form (``response_format=srt``...) with the same failover; the raw answer.

        ``audio`` may be bytes, a path or a seekable binary file; a file is
        rewound to where it was for every server tried.
        """
        start = audio.tell() if not isinstance(audio, (bytes, Path)) else 0

        def call(client: TwiAsrClient) -> Any:
            if not isinstance(audio, (bytes, Path)):
                audio.seek(start)
            return client.transcribe_raw(audio, form, filename=filename, request_id=request_id, route=route)

        response, server, seconds = self._failover(call, request_id)
        return AsrRaw(response, server, seconds)

    def ready(self) -> tuple[bool, str]:
        """Ask every server's ``/ready`` at once (``ready_timeout_s`` each): ``(any ready, summary)``.

        ``"ok: 2 of 2 servers ready"``, or ``"no ASR server ready: http://x:
        connection refused; ..."``. A server found ready counts as up again.
        """
        servers = self._servers
        answers = [(s["ready"], s["detail"]) for s in self.servers_status()]
        n_ready = sum(ok for ok, _ in answers)
        problems = "; ".join(
            f"{s.url}: {why}" for s, (ok, why) in zip(servers, answers, strict=True) if not ok
        )
        if n_ready == 0:
            return False, f"no ASR server ready: {problems}"
        summary = f"ok: {n_ready} of {len(servers)} servers ready"
        return True, f"{summary} ({problems})" if problems else summary

    def servers_status(self) -> list[dict[str, Any]]:
        """Each server's ``/ready``, asked at once: url, ready, detail, and its last call's error.

        For the admin page and ``/ready``; a server found ready counts as up again.
        """
        servers = self._servers
        with ThreadPoolExecutor(max_workers=min(16, len(servers)), thread_name_prefix="asr-ready") as pool:
            answers = list(pool.map(lambda s: s.client.readiness(timeout=self.ready_timeout_s), servers))
        with self._lock:
            for server, (ok, _why) in zip(servers, answers, strict=True):
                if ok:
                    server.down_since = None
            return [
                {"url": sv.url, "ready": bool(ok), "detail": why, "last_error": sv.last_error or None}
                for sv, (ok, why) in zip(servers, answers, strict=True)
            ]

    # --------------------------------------------------------------- plumbing
    def _order(self) -> list[_Server]:
        """Servers that answered last time (or failed long enough ago) in turn, then the others."""
        with self._lock:
            now = time.monotonic()
            up = [s for s in self._servers if s.down_since is None or now - s.down_since >= self.recheck_s]
            down = sorted((s for s in self._servers if s not in up), key=lambda s: s.down_since or 0.0)
            k = self._turn % len(up) if up else 0
            self._turn += 1
            return up[k:] + up[:k] + down

    def _mark(self, server: _Server, error: str | None) -> None:
        with self._lock:
            server.down_since = None if error is None else time.monotonic()
            server.last_error = error or ""

    def _failover(self, call: Callable[[TwiAsrClient], T], request_id: str | None) -> tuple[T, str, float]:
        reasons: dict[str, str] = {}
        timed_out = False
        for server in self._order():
            started = time.monotonic()
            try:
                value = call(server.client)
            except (ServerError, InputError, UsageError) as exc:  # about the input: no other server
                self._mark(server, None)
                raise _rejected(exc, server.url) from exc
            except EnvironmentProblem as exc:  # unreachable, 5xx, timeout, or our key refused
                timed_out = timed_out or isinstance(exc, ServerTimeout)
                reasons[server.url] = exc.message
                self._mark(server, exc.message)
                log.warning("ASR server %s failed [%s]: %s", server.url, request_id, exc.message)
                continue
            self._mark(server, None)
            return value, server.url, time.monotonic() - started
        detail = "; ".join(f"{url}: {why}" for url, why in reasons.items())
        if timed_out:  # another try would most likely time out again: fail, do not requeue forever
            raise AsrRejected("asr_timeout", f"no ASR server answered in time ({detail})", status=504)
        raise AsrUnavailable(f"no ASR server could take the request ({detail})", reasons=reasons)


def _rejected(exc: Exception, server: str) -> AsrRejected:
    """The server's own code and status for an input it refused."""
    code = getattr(exc, "server_code", None) or getattr(exc, "code", None) or "invalid_request"
    status = int(getattr(exc, "status", 422) or 422)
    message = getattr(exc, "server_message", None) or getattr(exc, "message", None) or str(exc)
    return AsrRejected(str(code), str(message), status=status, server=server)
