"""Secrets from files: ``TWI_ASR_<NAME>_FILE`` beside ``TWI_ASR_<NAME>``.

Docker and Swarm secrets and Kubernetes Secret volumes arrive as files
(``/run/secrets/...``). A key passed as a plain environment variable shows in
``docker inspect`` and in a pod spec; a key read from a file shows nowhere. The
settings classes call :func:`secret_from_file` for each secret field, so every
secret has both forms and the plain variable wins when both are set.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["secret_from_file"]

_MAX_SECRET_BYTES = 64 * 1024


def secret_from_file(path: Path | None, variable: str) -> str | None:
    """The secret in ``path`` with surrounding whitespace stripped, or None when no path is set.

    Raises ``ValueError`` (pydantic turns it into a settings error naming ``variable``) when the
    file is missing, unreadable, empty or implausibly large, so a typo in a mount fails at start-up
    instead of silently running without a key.
    """
    if path is None:
        return None
    try:
        size = path.stat().st_size
        if size > _MAX_SECRET_BYTES:
            raise ValueError(f"{variable}={path}: {size} bytes is not a secret (at most 64 KiB)")
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"{variable}={path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{variable}={path}: cannot read it ({exc.__class__.__name__})") from None
    if not value:
        raise ValueError(f"{variable}={path}: the file is empty")
    return value
