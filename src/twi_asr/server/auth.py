"""Optional API key: ``Authorization: Bearer KEY``, compared in constant time."""

from __future__ import annotations

import hmac

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(expected: str, header: str | None) -> bool:
    """True when the header carries exactly ``expected`` (timing-safe comparison)."""
    token = bearer_token(header)
    if token is None:
        return False
    return hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))
