"""The ledger of done inputs, so that a rerun after Ctrl-C, a crash or a killed server does only the rest.

It is a JSON Lines file at ``OUT/.twi-asr/ledger.jsonl``, one
:class:`~twi_asr.batch.records.FileRecord` per line, the last line for an
input winning. An input counts as done when its latest record says ``ok``,
its *content* (a SHA-256 of the bytes, or the S3 ETag) and *config* (model
and decoding options) match this run, and every output it needs is still
in OUT. So a changed input file, another model or a deleted output is done
again; everything else is skipped.

Order of writes makes a crash harmless: outputs first (each atomic), then
the ledger line. A kill between the two only means that input is done once
more on the rerun; a kill in the middle of a ledger line leaves a torn last
line, which loading skips and the next append starts after.

Locally every record is appended and fsync'ed at once. An ``s3://`` OUT has
no append, so the whole ledger object is rewritten (one PUT) at most every
``flush_every_s`` seconds and at the end: a crash there costs at most that
many seconds of redone work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EnvironmentProblem
from .records import FileRecord

if TYPE_CHECKING:
    from ..sinks import OutputSink
    from ..storage import InputItem

__all__ = ["LEDGER_NAME", "Ledger", "config_fingerprint", "content_id"]

log = logging.getLogger(__name__)

LEDGER_NAME = ".twi-asr/ledger.jsonl"
_HASH_CHUNK = 1 << 20


def content_id(item: InputItem, *, s3_client: Any = None) -> str:
    """What identifies the bytes of an input: ``sha256:<hex>`` of a local file, ``etag:<etag>:<size>`` on S3.

    S3 objects are not downloaded to be hashed: their ETag changes whenever
    their content does. A local file that cannot be read gets ``unreadable``
    (it will fail, with its reason, when transcribed).
    """
    if item.is_s3:
        from .. import storage

        bucket, key = storage.split_s3(item.source)
        client = s3_client or storage.s3_client()
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise storage.s3_error(exc, item.source) from exc
        return f"etag:{str(head.get('ETag', '')).strip(chr(34))}:{head.get('ContentLength', '')}"
    digest = hashlib.sha256()
    try:
        with open(item.source, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return "unreadable"
    return "sha256:" + digest.hexdigest()


def config_fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of what changes a transcript (model, options); equal settings, equal string."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Ledger:
    """Done inputs of earlier runs, and the records this run appends."""

    def __init__(
        self, *, local_path: Path | None = None, sink: OutputSink | None = None, flush_every_s: float = 10.0
    ) -> None:
        """Give ``local_path`` (append mode) or ``sink`` (rewrite mode); use :meth:`open` normally."""
        self.local_path = local_path
        self.sink = sink
        self.flush_every_s = flush_every_s
        self.records: dict[str, FileRecord] = {}
        self._dirty = False
        self._last_flush = time.monotonic()
        self.torn_lines = 0
        self._load()

    @classmethod
    def open(cls, out: str, sink: OutputSink, *, flush_every_s: float = 10.0) -> Ledger:
        """The ledger of OUT: a local file for a folder, an object through ``sink`` for ``s3://``."""
        if out.startswith("s3://"):
            return cls(sink=sink, flush_every_s=flush_every_s)
        return cls(local_path=Path(out).expanduser() / LEDGER_NAME, flush_every_s=flush_every_s)

    # ------------------------------------------------------------ reading
    def _raw(self) -> str:
        if self.local_path is not None:
            try:
                return self.local_path.read_bytes().decode("utf-8", errors="replace")
            except FileNotFoundError:
                return ""
            except OSError as exc:
                raise EnvironmentProblem(f"cannot read the ledger {self.local_path}: {exc.strerror}") from exc
        assert self.sink is not None
        data = self.sink.read(LEDGER_NAME)
        return data.decode("utf-8", errors="replace") if data else ""

    def _load(self) -> None:
        for line in self._raw().splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                rec = FileRecord.from_ledger(d)
            except (json.JSONDecodeError, TypeError):
                self.torn_lines += 1  # a line cut by a kill: that input is simply not done
                continue
            self.records[rec.relative] = rec
        if self.torn_lines:
            log.info("ledger: skipped %d unreadable line(s)", self.torn_lines)

    def done(
        self,
        relative: str,
        content: str,
        config: str,
        formats: Iterable[str],
        outputs_exist: Any = None,
    ) -> FileRecord | None:
        """The earlier ``ok`` record of this input if it still holds, else None.

        ``outputs_exist(names) -> bool`` checks the record's outputs are still
        in OUT (skipped when None).
        """
        rec = self.records.get(relative)
        if rec is None or rec.status != "ok" or rec.content != content or rec.config != config:
            return None
        if content == "unreadable" or not set(formats) <= set(rec.formats):
            return None
        if outputs_exist is not None and not outputs_exist([o for o in rec.outputs]):
            return None
        return rec

    # ------------------------------------------------------------ writing
    def add(self, rec: FileRecord) -> None:
        """Remember ``rec``: appended (and fsync'ed) now locally, on the next flush on S3."""
        self.records[rec.relative] = rec
        line = json.dumps(rec.to_ledger(), ensure_ascii=False) + "\n"
        if self.local_path is not None:
            self._append(line.encode("utf-8"))
        else:
            self._dirty = True
            if time.monotonic() - self._last_flush >= self.flush_every_s:
                self.flush()

    def _append(self, data: bytes) -> None:
        assert self.local_path is not None
        try:
            self.local_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.local_path, "a+b") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() > 0:  # a torn last line (a kill mid-write) must not swallow this record
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write the ledger {self.local_path}: {exc.strerror}") from exc

    def flush(self) -> None:
        """Write what is pending (S3: the whole ledger in one PUT; locally nothing is ever pending)."""
        if self.sink is None or not self._dirty:
            return
        body = "".join(json.dumps(r.to_ledger(), ensure_ascii=False) + "\n" for r in self.records.values())
        self.sink.write(LEDGER_NAME, body.encode("utf-8"))
        self._dirty = False
        self._last_flush = time.monotonic()
