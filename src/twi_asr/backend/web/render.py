"""Rendering the web app's templates: one Jinja2 environment, autoescaped, with the page's context.

Every page gets the signed-in user, the session's CSRF token (for the
``<meta>`` tag and the sign-out form) and the package version (to bust the
static files' cache). Pages are never cached and never framed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ... import __version__

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "render", "templates"]

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Same origin only: no CDN, no inline script; the recorder needs the microphone and blob: audio.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; media-src 'self' blob: *; connect-src 'self' *; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


@lru_cache(maxsize=1)
def templates() -> Any:
    """The Jinja2 environment (made once; autoescape on for every template)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    return env


def render(request: Request, name: str, auth: Any, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    """The template ``name`` with the page context, as an HTML response."""
    context = {
        "request_path": request.url.path,
        "user": auth.user if auth is not None else None,
        "csrf": auth.csrf_token if auth is not None else "",
        **values,
    }
    html = templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)
