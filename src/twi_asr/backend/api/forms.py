"""Reading job requests: a multipart form with a file, or a JSON body naming an upload or an S3 object.

Starlette spools a multipart file part to a temporary file past 1 MB, so a
big upload never sits in memory; the body limit itself is enforced while it
streams by :class:`~twi_asr.backend.api.middleware.Boundary`.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import quote

from fastapi import Request

from ...asgi_body import BodyTooLarge
from ..errors import InvalidInput

__all__ = [
    "EMPTY",
    "OPTION_FIELDS",
    "body_doc",
    "content_disposition",
    "object_schema",
    "read_form",
    "read_json",
    "refuse_unknown",
]

OPTION_FIELDS = ("language", "prompt", "word_timestamps", "task", "beam_size")
MAX_FIELD_BYTES = 64 * 1024


STR, INT, BOOL, FILE = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "boolean"},
    {"type": "string", "format": "binary"},
)
EMPTY = {"type": "string", "maxLength": 0}  # an empty form field: the option keeps its default


def refuse_unknown(fields: Any, allowed: Any) -> None:
    """400 ``unknown_field`` naming the first field (by name) that is not in ``allowed``."""
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", code="unknown_field", param=unknown[0])


def object_schema(
    properties: dict[str, Any], *, required: tuple[str, ...] = (), closed: bool = False
) -> dict[str, Any]:
    """A JSON schema of an object (for bodies the routes read by hand, so FastAPI cannot infer them);
    ``closed`` where the route refuses fields it does not know (``additionalProperties: false``)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def body_doc(content: dict[str, dict[str, Any]], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a request body (required unless told): media type -> schema."""
    return {"requestBody": {"required": required, "content": {k: {"schema": v} for k, v in content.items()}}}


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object of the body, or 400 ``invalid_json`` saying where it broke."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON ({exc})", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json")
    return body


async def read_form(request: Request) -> Any:
    """The multipart form (files spooled to disk), or 400 when it cannot be parsed."""
    try:
        return await request.form(max_files=1, max_fields=32, max_part_size=MAX_FIELD_BYTES)
    except BodyTooLarge:  # the boundary answers 413
        raise
    except Exception as exc:  # starlette raises its own errors for broken or oversized parts
        raise InvalidInput(f"the multipart form cannot be read ({exc})", code="invalid_form") from exc


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """``attachment`` (or ``inline``) with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 5987)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", filename) if not unicodedata.combining(c))
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in plain)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
