"""A tiny example backend on port 8000 that hands uploads to the twi-asr server (standard library only).

It stands for "your application" in docker/compose.yaml: the browser or the app talks to it, and it
talks to the ASR service over the compose network (``http://asr:8001``), which is never exposed.

    POST /transcribe      multipart/form-data (field ``file``, plus any OpenAI field such as
                          ``language`` or ``response_format``): forwarded as it is; or a raw audio
                          body (``?filename=clip.wav&language=en``), wrapped into multipart
    GET  /health          200 while this process runs
    GET  /ready           the ASR server's /ready, relayed (200 or 503)

Environment: ``ASR_URL`` (default http://asr:8001), ``ASR_API_KEY`` (sent as a Bearer token when
set), ``BACKEND_HOST`` (0.0.0.0), ``BACKEND_PORT`` (8000), ``BACKEND_MAX_UPLOAD_MB`` (100),
``ASR_TIMEOUT_S`` (300). ``X-Request-ID`` is passed through both ways.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRANSCRIBE_PATH = "/v1/audio/transcriptions"


def _config() -> dict[str, str]:
    return {
        "asr_url": os.environ.get("ASR_URL", "http://asr:8001").rstrip("/"),
        "api_key": os.environ.get("ASR_API_KEY", "").strip(),
        "max_upload": str(int(float(os.environ.get("BACKEND_MAX_UPLOAD_MB", "100")) * 1024 * 1024)),
        "timeout": os.environ.get("ASR_TIMEOUT_S", "300"),
    }


def wrap_multipart(audio: bytes, filename: str, fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body with ``file`` = audio and the other fields as text parts."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "audio"
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + audio
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Handler(BaseHTTPRequestHandler):
    server_version = "twi-asr-example-backend"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:  # one line per request on stderr
        rid = self.headers.get("X-Request-ID", "-") if self.headers else "-"
        super().log_message("[%s] " + fmt, rid, *args)

    def _send(self, status: int, body: bytes, content_type: str, request_id: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("X-Request-ID", request_id)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object, request_id: str | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", request_id)

    def _asr(self, path: str, data: bytes | None = None, content_type: str | None = None) -> tuple:
        cfg = _config()
        headers = {"X-Request-ID": self.headers.get("X-Request-ID") or uuid.uuid4().hex}
        if content_type:
            headers["Content-Type"] = content_type
        if cfg["api_key"]:
            headers["Authorization"] = f"Bearer {cfg['api_key']}"
        req = urllib.request.Request(cfg["asr_url"] + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=float(cfg["timeout"])) as r:
                return r.status, r.read(), r.headers.get("Content-Type", ""), r.headers.get("X-Request-ID")
        except urllib.error.HTTPError as e:  # the ASR's own error body (JSON) is relayed as it is
            return e.code, e.read(), e.headers.get("Content-Type", ""), e.headers.get("X-Request-ID")

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            self._json(200, {"status": "ok"})
        elif path == "/ready":
            try:
                status, body, ctype, rid = self._asr("/ready")
            except OSError as exc:
                self._json(503, {"status": "asr unreachable", "detail": str(exc)})
                return
            self._send(status, body, ctype or "application/json", rid)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/transcribe":
            self._json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(411, {"error": "Content-Length required"})
            return
        if length > int(_config()["max_upload"]):
            self.close_connection = True
            self._json(413, {"error": "upload too large"})
            return
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            query = dict(urllib.parse.parse_qsl(url.query))
            body, ctype = wrap_multipart(body, query.pop("filename", "audio"), query)
        try:
            status, out, out_type, rid = self._asr(TRANSCRIBE_PATH, body, ctype)
        except OSError as exc:
            self._json(502, {"error": "asr unreachable", "detail": str(exc)})
            return
        self._send(status, out, out_type or "application/json", rid)


def main() -> None:
    host = os.environ.get("BACKEND_HOST", "0.0.0.0")
    port = int(os.environ.get("BACKEND_PORT", "8000"))
    server = ThreadingHTTPServer((host, port), Handler)
    # As PID 1 in a container, SIGTERM is ignored unless handled: exit cleanly on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"example backend on {host}:{port} -> {_config()['asr_url']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
