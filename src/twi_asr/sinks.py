"""Where outputs go: a local folder or an ``s3://bucket/prefix``, behind one small interface.

:func:`open_sink` turns what a user typed after ``-o`` into an
:class:`OutputSink`. Both implementations promise the same three things:

- a name can never land outside OUT: absolute names, drive letters and
  ``..`` that climbs above OUT are refused with :class:`UsageError`
  (``a/../b`` is fine: it stays inside and means ``b``), and locally a
  symlink inside OUT that points elsewhere is refused too;
- a reader never sees half a file: locally a temp file is renamed over the
  target (see :func:`twi_asr.writers._atomic_write`), on S3 each object is
  one PUT, which S3 applies atomically;
- problems surface early: a missing bucket, missing or rejected
  credentials and an unreachable endpoint fail when the sink is opened,
  before any audio is decoded. (A write-only role may not list the bucket,
  so a denied listing is let through; a denied write then fails with an
  "access denied" :class:`EnvironmentProblem`.)

boto3 is imported only when an S3 sink is opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from .errors import EnvironmentProblem, UsageError
from .types import Transcript
from .writers import _atomic_write, _safe_relative, parse_formats, render

__all__ = ["LocalSink", "OutputSink", "S3Sink", "open_sink", "output_name", "write_outputs"]

_DRIVE = re.compile(r"^[A-Za-z]:")

_CONTENT_TYPES = {
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".srt": "application/x-subrip; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
    ".tsv": "text/tab-separated-values; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


@runtime_checkable
class OutputSink(Protocol):
    """A place that takes named outputs: a local folder or an S3 prefix."""

    location: str
    """What the user named (folder path or ``s3://bucket/prefix``), for messages."""

    def write(self, relative: str, data: bytes) -> str:
        """Store ``data`` under ``relative`` atomically; return the path or URI written."""
        ...

    def exists(self, relative: str) -> bool:
        """True when an output named ``relative`` is already there."""
        ...

    def read(self, relative: str) -> bytes | None:
        """The content stored under ``relative``, or None when there is none."""
        ...


def checked_relative(relative: str) -> PurePosixPath:
    """``relative`` as a clean POSIX path inside OUT, or :class:`UsageError` when it would leave OUT.

    ``\\`` counts as a separator (names can come from Windows clients);
    empty and ``.`` parts are dropped; ``..`` cancels the part before it.
    Refused: absolute names, drive letters, NUL, a ``..`` with nothing left
    to cancel, and names with no file name at all.
    """
    name = os.fspath(relative)
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UsageError(f"output name {name!r} is absolute: it would be written outside OUT")
    depth = 0
    for part in unified.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UsageError(f"output name {name!r} climbs out of OUT with '..'")
        elif part not in ("", "."):
            depth += 1
    return _safe_relative(unified)  # NUL and empty names raise UsageError there


def output_name(relative: str, fmt: str) -> str:
    """The sink-relative name of format ``fmt`` for the input ``relative``: ``sub/a.wav`` -> ``sub/a.srt``.

    The same naming as :func:`twi_asr.writers.output_path` (climbing ``..``
    clamped, roots dropped), so local and S3 outputs mirror the source tree
    identically.
    """
    return _safe_relative(relative).with_suffix(f".{fmt}").as_posix()


def write_outputs(
    sink: OutputSink, transcript: Transcript, relative: str, formats: str | Sequence[str]
) -> list[str]:
    """Write ``transcript`` in each format to ``sink``; return what was written.

    Every name is checked and every content rendered before the first write,
    so a bad format or name writes nothing.
    """
    fmts = parse_formats(formats)
    planned = [(output_name(relative, fmt), render(transcript, fmt).encode("utf-8")) for fmt in fmts]
    for name, _ in planned:
        checked_relative(name)
    return [sink.write(name, data) for name, data in planned]


class LocalSink:
    """Outputs in a local folder (created when the sink is opened)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Create ``root`` (and parents) now, so an unwritable OUT fails before any work."""
        self.location = os.fspath(root)
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write to {self.location}: {exc.strerror or exc}") from exc

    def path(self, relative: str) -> Path:
        """The local path of ``relative``; :class:`UsageError` when it (or a symlink) leaves OUT."""
        rel = checked_relative(relative)
        path = self.root.joinpath(*rel.parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise UsageError(f"output {relative!r} would be written outside {self.location}")
        return path

    def write(self, relative: str, data: bytes) -> str:
        """Temp file beside the target, fsync, rename over it; return the path written."""
        path = self.path(relative)
        try:
            _atomic_write(path, data)
        except OSError as exc:  # disk full, read-only folder...
            raise EnvironmentProblem(f"cannot write to {self.location}: {exc.strerror or exc}") from exc
        return str(path)

    def exists(self, relative: str) -> bool:
        """True when the file is there."""
        return self.path(relative).is_file()

    def read(self, relative: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return self.path(relative).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            why = exc.strerror or exc
            raise EnvironmentProblem(f"cannot read {relative} in {self.location}: {why}") from exc

    def __repr__(self) -> str:
        return f"LocalSink({self.location!r})"


class S3Sink:
    """Outputs under an ``s3://bucket/prefix``: one object per output, one PUT each."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        """Check the bucket now (exists, endpoint reachable, credentials valid), before any work."""
        from . import storage

        self.bucket, prefix = storage.split_s3(uri)
        self.prefix = prefix.strip("/")
        self.location = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.client = client or storage.s3_client(endpoint_url)
        storage.check_bucket(self.bucket, prefix=self.prefix, client=self.client, uri=self.location)

    def key(self, relative: str) -> str:
        """The object key of ``relative``; :class:`UsageError` when the name would leave the prefix."""
        rel = checked_relative(relative).as_posix()
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def uri(self, relative: str) -> str:
        """``s3://bucket/key`` of ``relative``."""
        return f"s3://{self.bucket}/{self.key(relative)}"

    def write(self, relative: str, data: bytes) -> str:
        """One PUT (atomic on S3: readers see the old object or the new one); return its URI."""
        from . import storage

        key = self.key(relative)
        uri = f"s3://{self.bucket}/{key}"
        content_type = _CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            raise storage.s3_error(exc, uri) from exc
        return uri

    def exists(self, relative: str) -> bool:
        """HEAD the object: True when it is there."""
        from . import storage

        return storage.s3_exists(self.uri(relative), client=self.client)

    def read(self, relative: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        from . import storage
        from .errors import InputNotFoundError

        uri = self.uri(relative)
        try:
            return storage.read_bytes(uri, client=self.client)
        except InputNotFoundError:
            return None

    def __repr__(self) -> str:
        return f"S3Sink({self.location!r})"


def open_sink(out: str | os.PathLike[str], *, endpoint_url: str | None = None) -> OutputSink:
    """A sink for ``out``: ``s3://bucket/prefix`` -> :class:`S3Sink`, anything else a local folder.

    ``endpoint_url`` overrides the S3 endpoint (otherwise ``--s3-endpoint-url``
    via :func:`twi_asr.storage.set_endpoint_url`, ``TWI_ASR_S3_ENDPOINT_URL``
    or boto3's own ``AWS_ENDPOINT_URL``). Fails early, with exit code 3, when
    the folder cannot be created, the bucket is missing, the credentials are
    missing or rejected, or the endpoint is unreachable.
    """
    text = os.fspath(out)
    if text.startswith("s3://"):
        return S3Sink(text, endpoint_url=endpoint_url)
    if text.lower().startswith("s3:"):
        raise UsageError(f"{text!r}: an S3 output is written s3://bucket/prefix")
    return LocalSink(text)
