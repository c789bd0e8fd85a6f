"""Secrets: API keys, passwords, session tokens and signed local upload URLs.

- API keys are 256-bit random strings (``twk_...``); only their SHA-256 is
  stored. A fast hash is right for them: they are not guessable, and the
  hash must be looked up on every request.
- Passwords are hashed with argon2id (argon2-cffi), slow on purpose.
- Session cookies carry a random token; the database keeps its SHA-256 and a
  CSRF token that state-changing form posts must echo.
- Local-storage upload URLs are signed with HMAC-SHA256 under the server's
  secret key, so a client can PUT a file without an API key, once, in time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = [
    "KEY_PREFIX",
    "hash_password",
    "hash_token",
    "load_secret_key",
    "new_api_key",
    "new_token",
    "sign",
    "verify_password",
    "verify_signature",
]

KEY_PREFIX = "twk_"


def hash_token(token: str) -> str:
    """SHA-256 hex of an API key or session token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """A new key: (the key to show once, a short prefix to recognise it by, its hash)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12], hash_token(key)


def new_token() -> str:
    """A random url-safe token (session cookies, CSRF tokens)."""
    return secrets.token_urlsafe(32)


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return str(_hasher().hash(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored argon2 hash (False for a user without one)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    if not stored:
        _hasher().hash(password)  # spend the same time as a real check: no user-exists oracle
        return False
    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def sign(secret: bytes, *parts: str) -> str:
    """HMAC-SHA256 hex over the parts joined by newlines."""
    return hmac.new(secret, "\n".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, signature: str, *parts: str) -> bool:
    """Constant-time check of a :func:`sign` result (as bytes: compare_digest refuses non-ASCII text)."""
    return hmac.compare_digest(sign(secret, *parts).encode(), (signature or "").encode("utf-8", "replace"))


def load_secret_key(configured: str | None, data_dir: Path) -> bytes:
    """The server's signing key: the configured one, else one kept in ``data_dir/secret_key`` (0600).

    Several backend hosts behind one load balancer must share it: set
    ``TWI_ASR_SECRET_KEY`` there.
    """
    if configured:
        return configured.encode("utf-8")
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key
