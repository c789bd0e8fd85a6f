"""The object store's interface and the rules both stores share (keys, atomic local copies).

Used by :mod:`.blobs` (the local store and the factory) and :mod:`.blobs_s3`.

A :class:`BlobStore` is either a local folder (one machine, the default) or an
``s3://bucket/prefix`` (several hosts share it; see :mod:`.blobs_s3`). Services
only ever name *keys*, relative POSIX paths like ``jobs/job_abc/ɔkɔm nsɛm.wav``,
so the same code runs against both. Keys keep their UTF-8 as-is (Twi letters and
spaces included): what a user called a file is what lands on disk or in S3.

Why these rules:

- Writes stream in 1 MiB chunks, so a 1 GB upload never sits in memory.
- A local write goes to a temp file in the same folder and is renamed into place
  (``os.replace``), so a reader sees the old object or the whole new one, never
  half; an upload over its limit leaves nothing behind.
- Every failure is a :mod:`.errors` class the API turns into its JSON body: a
  missing key is :class:`NotFound` (``blob_not_found``), a broken disk or
  bucket is :class:`StorageUnavailable` (503, retry), a key that would climb out
  of the root is :class:`InvalidInput`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import InvalidInput, StorageUnavailable

__all__ = ["CHUNK", "BlobStore", "check_key"]

CHUNK = 1 << 20  # streamed copies go 1 MiB at a time
_MAX_KEY_BYTES = 1024  # S3's limit on a key, applied to local stores too so both accept the same keys
_MAX_PART_BYTES = 255  # a file name's limit on Linux filesystems
_TMP_PREFIX = ".tmp-"  # in-flight local writes; short, so a long final name still fits


class BlobStore(Protocol):
    """Where the backend keeps bytes; keys are relative POSIX paths checked by :func:`check_key`."""

    location: str
    """The folder path or ``s3://bucket/prefix`` the store was opened with (for logs and /ready)."""

    def put_stream(
        self, key: str, source: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> int:
        """Stream ``source`` to ``key`` in chunks (never the whole file in memory); return bytes written.

        Over ``max_bytes``: raises :class:`TooLarge` and leaves nothing behind
        (no partial object or file). An error reading ``source`` itself (a
        client that hung up) propagates unchanged.
        """
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Write a small object (a transcript) in one go."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object (for small ones: transcripts); :class:`NotFound` if missing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object; the caller closes it. :class:`NotFound` if missing."""
        ...

    def download_to(self, key: str, dest: Path) -> int:
        """Streamed copy of the object to the local file ``dest`` (atomically); return its size."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; ``None`` when there is no such object."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder ``prefix`` (a job's folder); return how many."""
        ...

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> str | None:
        """A URL a client can PUT the bytes to directly (S3), or ``None`` (local: the API signs its own)."""
        ...

    def presign_get(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """A URL a browser can GET (and Range-read) the object from directly (S3), or ``None`` (local)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's file when the store is a local folder (served with Range support), else None."""
        ...

    def check(self) -> None:
        """Cheap health check for /ready: raise :class:`StorageUnavailable` saying why."""
        ...


def check_key(key: str, *, what: str = "key") -> str:
    """Return ``key`` unchanged if it is a safe relative POSIX path, else raise :class:`InvalidInput`.

    Refused: empty keys, absolute paths, ``..``, ``.`` or empty parts
    (``a//b``), backslashes, NUL and other control characters, and keys longer
    than S3 allows. The same rules for both stores, so a key that works locally
    works on S3. No Unicode normalisation: ``ɔkɔm nsɛm.wav`` stays byte for byte.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"empty storage {what}", code="invalid_key")
    if "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidInput(f"storage {what} {key!r} has a backslash or control character", code="invalid_key")
    if key.startswith("/"):
        raise InvalidInput(f"storage {what} {key!r} must be relative, not absolute", code="invalid_key")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(
            f"storage {what} {key!r} has an empty, '.' or '..' part (it must stay under the root)",
            code="invalid_key",
        )
    try:
        encoded = [part.encode("utf-8") for part in parts]
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidInput(f"storage {what} {key!r} is not valid UTF-8", code="invalid_key") from exc
    if sum(len(p) for p in encoded) + len(parts) - 1 > _MAX_KEY_BYTES or any(
        len(p) > _MAX_PART_BYTES for p in encoded
    ):
        raise InvalidInput(
            f"storage {what} too long (at most {_MAX_KEY_BYTES} bytes, {_MAX_PART_BYTES} per part)",
            code="invalid_key",
        )
    return key


def _discard(path: Path) -> None:
    """Remove a temp file if it is there; a failure here must not hide the error being raised."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _disk_error(exc: OSError, path: Path, doing: str) -> StorageUnavailable:
    """A failing disk as a 503 that says what to look at."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some space on that disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the folder writable by the backend's user, or point TWI_ASR_STORAGE elsewhere"
    else:
        hint = "check the storage folder (TWI_ASR_STORAGE)"
    return StorageUnavailable(f"storage: cannot {doing} {path}: {why}: {hint}")


def _copy_to_file(src: BinaryIO, dest: Path) -> int:
    """Stream ``src`` into ``dest`` atomically (temp file beside it, then rename); return the bytes."""
    tmp = dest.with_name(f"{_TMP_PREFIX}{secrets.token_hex(8)}.part")
    written = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            while block := src.read(CHUNK):
                out.write(block)
                written += len(block)
        os.replace(tmp, dest)
    except OSError as exc:
        _discard(tmp)
        raise _disk_error(exc, dest, "write") from exc
    except BaseException:
        _discard(tmp)
        raise
    return written
