"""S3 objects moved in and out: prefix listing, streamed reads, atomic downloads, folder sync.

Why apart from :mod:`.storage_s3`: that module makes the client and maps errors; this one
is the data path, which streams 1 MiB at a time (never one read of a whole body) and
writes files atomically. ``read_bytes`` also reads local paths, so callers need not care.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import EnvironmentProblem, InputNotFoundError
from .storage_s3 import s3_client, s3_error, split_s3

_CHUNK = 1 << 20  # streamed reads go 1 MiB at a time
_SPOOL_MAX = 64 << 20  # above this, a streamed object spills from memory to a temp file


def list_s3(uri: str, client: Any = None) -> Iterator[tuple[str, str]]:
    """Every object under a prefix as ``(s3 uri, key relative to the prefix)``, paginated (1,000 a page).

    ``s3://b/in`` and ``s3://b/in/`` both mean the folder ``in/`` (as
    ``aws s3 cp --recursive`` reads them), so ``inside/x.wav`` is not
    included; an exact key is that one object, named by its file name.
    Folder markers (keys ending in ``/``) are skipped.
    """
    bucket, prefix = split_s3(uri)
    client = client or s3_client()
    try:
        if prefix and not prefix.endswith("/"):
            # the exact key, if there is one, is the first key listed under its own name
            first = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("Contents", [])
            if first and first[0]["Key"] == prefix:
                yield f"s3://{bucket}/{prefix}", PurePosixPath(prefix).name
            prefix += "/"
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                yield f"s3://{bucket}/{key}", key[len(prefix) :]
    except Exception as exc:
        raise s3_error(exc, uri) from exc


def _stream_object(bucket: str, key: str, sink: IO[bytes], client: Any) -> int:
    """Copy one object into ``sink`` 1 MiB at a time (never one read of the whole body); bytes copied."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    n = 0
    try:
        for chunk in body.iter_chunks(_CHUNK):
            sink.write(chunk)
            n += len(chunk)
    finally:
        body.close()
    return n


def open_s3(uri: str, client: Any = None) -> IO[bytes]:
    """An S3 object streamed into a spooled temp file, rewound; the caller closes it.

    Small objects stay in memory; past 64 MiB the spool moves to disk, so a
    long recording never has to fit in RAM twice.
    """
    bucket, key = split_s3(uri)
    client = client or s3_client()
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)  # noqa: SIM115 - returned to the caller
    try:
        _stream_object(bucket, key, spool, client)
    except BaseException as exc:
        spool.close()
        if isinstance(exc, Exception):
            raise s3_error(exc, uri) from exc
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def download(uri: str, dest: Path, client: Any = None) -> Path:
    """Stream an S3 object to ``dest`` atomically (``.part`` file, then rename); return ``dest``."""
    bucket, key = split_s3(uri)
    client = client or s3_client()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    try:
        with open(tmp, "wb") as f:
            _stream_object(bucket, key, f, client)
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and not isinstance(exc, OSError):
            raise s3_error(exc, uri) from exc
        raise
    return dest


def read_bytes(source: str, client: Any = None) -> bytes:
    """The whole content of a local file or S3 object (S3 streamed in 1 MiB chunks).

    Missing keys and buckets are :class:`InputNotFoundError`; denied access and
    credential or endpoint problems are :class:`EnvironmentProblem`.
    """
    if not source.startswith("s3://"):
        return Path(source).read_bytes()
    bucket, key = split_s3(source)
    client = client or s3_client()
    buf = io.BytesIO()
    try:
        _stream_object(bucket, key, buf, client)
    except Exception as exc:
        raise s3_error(exc, source) from exc
    return buf.getvalue()


def sync_prefix_to_folder(uri: str, dest: Path, client: Any = None) -> Path:
    """Download every object under ``uri`` into ``dest`` once; skip files whose ETag and size match.

    A ledger (``dest/.etags.json``: relative name -> ``ETag:size``) records
    what was fetched, so a rerun costs one listing and no GET, and a changed
    artifact is fetched again. The ledger is saved after each file, so an
    interrupted download resumes where it stopped; files land atomically
    (temp name, then rename); files this ledger fetched that are gone from
    S3 are removed. Keys that would climb out of ``dest`` are ignored.
    """
    import json

    bucket, prefix = split_s3(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = client or s3_client()
    root = dest.resolve()
    ledger_path = dest / _LEDGER
    try:
        dest.mkdir(parents=True, exist_ok=True)
        ledger: dict[str, str] = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
        if not isinstance(ledger, dict):
            ledger = {}
    except ValueError:  # a torn or foreign ledger: fetch everything again
        ledger = {}
    except OSError as exc:
        raise EnvironmentProblem(f"cannot use the cache folder {dest}: {exc.strerror or exc}") from exc
    seen: set[str] = set()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if not rel or rel.endswith("/") or rel == _LEDGER:
                    continue
                target = dest / rel
                if not target.resolve().is_relative_to(root) or target.resolve() == root:
                    continue  # a key with '..' must not escape the cache
                seen.add(rel)
                stamp = f"{obj['ETag']}:{obj['Size']}"
                if ledger.get(rel) == stamp and target.is_file() and target.stat().st_size == obj["Size"]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
                try:
                    client.download_file(bucket, obj["Key"], str(tmp))  # streamed, ranged for big files
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
                ledger[rel] = stamp
                _save_ledger(ledger_path, ledger)
    except OSError as exc:  # disk full, read-only cache
        raise EnvironmentProblem(f"cannot write into the cache folder {dest}: {exc.strerror or exc}") from exc
    except Exception as exc:
        raise s3_error(exc, uri) from exc
    if not seen:
        raise InputNotFoundError(f"nothing under {uri}")
    for gone in set(ledger) - seen:  # removed upstream: do not load a stale file with the new ones
        (dest / gone).unlink(missing_ok=True)
        del ledger[gone]
    _save_ledger(ledger_path, ledger)
    return dest


_LEDGER = ".etags.json"


def _save_ledger(path: Path, ledger: dict[str, str]) -> None:
    """Write the ledger atomically (a crash leaves the old one or the new one)."""
    import json

    from .writers import _atomic_write

    _atomic_write(path, json.dumps(ledger, indent=1, sort_keys=True).encode())
