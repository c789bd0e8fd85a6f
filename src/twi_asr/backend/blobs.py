"""The backend's object storage: a local folder (the default) or S3, behind one :class:`BlobStore`.

Services name only keys (``jobs/<id>/input/ɔkɔm nsɛm.wav``); :func:`open_store` picks the store from
the location. The shared rules (keys, atomic copies) are in :mod:`.blobs_base`, S3 in :mod:`.blobs_s3`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

from .blobs_base import _TMP_PREFIX, CHUNK, BlobStore, _copy_to_file, _discard, _disk_error, check_key
from .errors import InvalidInput, NotFound, TooLarge

__all__ = ["BlobStore", "LocalBlobStore", "check_key", "open_store", "read_s3_uri"]


class LocalBlobStore:
    """A :class:`BlobStore` in a local folder; every key is a file under it.

    The folder is made on the first write (or :meth:`check`), so a backend can
    start before its volume is mounted and say so on /ready.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.location = str(root)
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.location!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _missing(self, key: str) -> NotFound:
        return NotFound(f"no stored object {key!r} in {self.location}", code="blob_not_found")

    def _write(self, key: str, chunks: BinaryIO | None, data: bytes, max_bytes: int | None) -> int:
        """Write ``data`` or the chunks of a stream to a temp file beside the target, then rename it.

        A failing disk is StorageUnavailable; a failing *source* (a client
        that hung up mid-upload) propagates as it was; either way, and on
        TooLarge, the temp file is removed and the old object stays.
        """
        path = self._path(key)
        tmp = path.with_name(f"{_TMP_PREFIX}{secrets.token_hex(8)}.part")
        written = 0
        reading = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as out:
                if chunks is None:
                    out.write(data)
                    written = len(data)
                else:
                    while True:
                        reading = True
                        block = chunks.read(CHUNK)
                        reading = False
                        if not block:
                            break
                        written += len(block)
                        if max_bytes is not None and written > max_bytes:
                            raise TooLarge(f"the upload is over the limit of {max_bytes} bytes")
                        out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            _discard(tmp)
            if reading:
                raise
            raise _disk_error(exc, path, "write") from exc
        except BaseException:  # TooLarge, a source that failed, KeyboardInterrupt: leave nothing
            _discard(tmp)
            raise
        return written

    def put_stream(
        self, key: str, source: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> int:
        """See :meth:`BlobStore.put_stream` (``content_type`` is not kept locally)."""
        return self._write(key, source, b"", max_bytes)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """See :meth:`BlobStore.put_bytes`."""
        self._write(key, None, data, None)

    def open(self, key: str) -> BinaryIO:
        """See :meth:`BlobStore.open`."""
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - handed to the caller
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise self._missing(key) from exc
        except OSError as exc:
            raise _disk_error(exc, path, "read") from exc

    def read_bytes(self, key: str) -> bytes:
        """See :meth:`BlobStore.read_bytes`."""
        with self.open(key) as f:
            try:
                return f.read()
            except OSError as exc:
                raise _disk_error(exc, self._path(key), "read") from exc

    def download_to(self, key: str, dest: Path) -> int:
        """See :meth:`BlobStore.download_to`."""
        dest = Path(dest)
        with self.open(key) as src:
            return _copy_to_file(src, dest)

    def size(self, key: str) -> int | None:
        """See :meth:`BlobStore.size`."""
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _disk_error(exc, path, "read") from exc
        return st.st_size if path.is_file() else None

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`BlobStore.delete_prefix`; ``prefix`` names a folder (``jobs/job_abc``)."""
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        count = sum(len(files) for _, _, files in os.walk(folder))
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:  # another worker deleted it first
            pass
        except OSError as exc:
            raise _disk_error(exc, folder, "delete") from exc
        return count

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> str | None:
        """None: a local store has no URL of its own; the API serves a signed one."""
        check_key(key)
        return None

    def presign_get(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """None: the API serves a local object itself (see :meth:`local_path`)."""
        check_key(key)
        return None

    def local_path(self, key: str) -> Path | None:
        """The object's file, or None when there is none."""
        path = self._path(key)
        return path if path.is_file() else None

    def check(self) -> None:
        """The folder exists (made if need be) and takes a write: a probe file is written and removed."""
        probe = self.root / f"{_TMP_PREFIX}ready-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            _discard(probe)
            raise _disk_error(exc, self.root, "write into") from exc


def open_store(
    location: str, *, endpoint_url: str | None = None, public_endpoint_url: str | None = None
) -> BlobStore:
    """The store for a folder path (``file://`` optional) or ``s3://bucket/prefix``.

    Makes no network call and no folder: a bad bucket or a missing disk shows
    on the first use and on :meth:`BlobStore.check` (/ready), so the backend
    still starts and can say what is wrong. ``endpoint_url`` points S3 at
    MinIO or another compatible server (else ``TWI_ASR_S3_ENDPOINT_URL``, then
    ``AWS_ENDPOINT_URL``).
    """
    location = (location or "").strip()
    if not location:
        raise InvalidInput("no storage location: give a folder or s3://bucket/prefix (TWI_ASR_STORAGE)")
    if location.startswith("s3://"):
        from .blobs_s3 import S3BlobStore

        return S3BlobStore(location, endpoint_url=endpoint_url, public_endpoint_url=public_endpoint_url)
    if location.startswith("file://"):
        location = location[len("file://") :]
    if "://" in location:
        raise InvalidInput(f"storage {location!r}: expected a folder or s3://bucket/prefix")
    return LocalBlobStore(location)


def read_s3_uri(
    uri: str, dest: Path, *, max_bytes: int | None = None, endpoint_url: str | None = None
) -> int:
    """Stream any ``s3://bucket/key`` the backend's credentials can read into ``dest``; return its size.

    For jobs submitted as ``{"s3_uri": ...}``. See :func:`.blobs_s3.read_s3_uri`.
    """
    from .blobs_s3 import read_s3_uri as _read

    return _read(uri, dest, max_bytes=max_bytes, endpoint_url=endpoint_url)
