"""What a client asks of a job, checked before anything is stored: file name, type, options, webhook.

Every refusal names the field (``param``) and says what would be accepted, so
a 400 or 415 is something a client can fix without reading our code.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, UnsupportedType

__all__ = ["JobRequest", "check_type", "clean_filename", "validate_options", "validate_webhook"]

_OK_TYPES = ("audio/", "video/", "application/octet-stream", "application/ogg", "binary/octet-stream")


@dataclass
class JobRequest:
    """What a client asked for, validated: file name, options, webhook, idempotency key."""

    filename: str
    content_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_id: str | None = None


def clean_filename(name: str | None) -> str:
    """The client's file name without folders or control characters, NFC, at most 200 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C")
    base = base.strip().strip(".") or "audio"
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:190] + dot + ext[:9]) if dot and len(ext) < 10 else base[:200]
    return base


def check_type(filename: str, content_type: str | None) -> None:
    """415 for a declared type that is neither audio nor video (a missing type is let through)."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct and not ct.startswith(_OK_TYPES):
        raise UnsupportedType(
            f"{filename!r} was sent as {ct!r}: send audio or video (audio/*, video/*)",
            param="file",
        )


def validate_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Decoding options a job may carry, checked and normalised (400 names the bad field)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        if key == "language":
            if not isinstance(value, str) or len(value) > 20:
                raise InvalidInput("language must be a short code such as 'tw' or 'en'", param=key)
            out[key] = value.strip()
        elif key == "prompt":
            if not isinstance(value, str) or len(value) > 4000:
                raise InvalidInput("prompt must be text of at most 4000 characters", param=key)
            out[key] = value
        elif key == "word_timestamps":
            out[key] = _boolean(value, key)
        elif key == "task":
            if value not in ("transcribe", "translate"):
                raise InvalidInput("task must be 'transcribe' or 'translate'", param=key)
            out[key] = value
        elif key == "beam_size":
            try:
                beam = int(value)
            except (TypeError, ValueError):
                beam = 0
            if not 1 <= beam <= 20:
                raise InvalidInput("beam_size must be a whole number from 1 to 20", param=key)
            out[key] = beam
        else:
            raise InvalidInput(f"unknown field {key!r}", code="unknown_field", param=key)
    return out


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{key} must be true or false", param=key)


def validate_webhook(url: object) -> str | None:
    """An http(s) URL of at most 2000 characters, or None."""
    if url is None or url == "":
        return None
    if (
        not isinstance(url, str)
        or not url.startswith(("http://", "https://"))
        or len(url) > 2000
        or any(c.isspace() for c in url)
    ):
        raise InvalidInput(
            "webhook_url must be an http:// or https:// URL", code="invalid_webhook_url", param="webhook_url"
        )
    return url
