"""The small web page at ``/`` on 8001: pick or record audio, watch the text stream in, download SRT/VTT.

Plain files under ``static/`` (no build step, no CDN): ``GET /`` answers ``index.html`` and
``/static/`` serves ``app.js`` and ``style.css``. The page talks to the public API only
(``POST /v1/audio/transcriptions`` with ``stream=true``), so it needs nothing else from the
server. :func:`mount_page` is called by :func:`twi_asr.server.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
PAGE_PATHS = ("/", "/static")
"""The page's own paths: open (no API key needed) since they hold no data; the key the user
types is sent by the page with each API call."""

# The page loads only its own files and talks only to this server; blob: is for the
# client-side SRT/VTT downloads and the recording preview.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount_page(app: FastAPI) -> None:
    """Add ``GET /`` (the page) and ``/static/*`` (its script and style) to ``app``, out of the schema."""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        html = (STATIC_DIR / "index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)

    app.mount("/static", _Static(directory=STATIC_DIR), name="static")


class _Static(StaticFiles):
    """StaticFiles with the page's headers, and UTF-8 declared for the text assets."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        ctype = response.headers.get("content-type", "")
        if ctype.startswith(("text/", "application/javascript")) and "charset" not in ctype:
            response.headers["content-type"] = f"{ctype}; charset=utf-8"
        response.headers.update({k: v for k, v in _HEADERS.items() if k != "Content-Security-Policy"})
        return response
