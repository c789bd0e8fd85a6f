"""Where inputs come from and outputs go: local paths, globs and ``s3://``.

Discovery turns what a user typed (files, folders, globs, S3 prefixes) into
a list of :class:`InputItem`, each with a *relative name* that outputs mirror,
so ``recordings/day1/a.wav`` lands at ``OUT/day1/a.srt``. S3 goes through
boto3 with the standard credential chain; ``AWS_ENDPOINT_URL`` points it at
any S3-compatible endpoint.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .audio import AUDIO_EXTENSIONS
from .errors import DependencyMissingError, EnvironmentProblem, InputError, InputNotFoundError, UsageError

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One input to transcribe: where to read it and the name its outputs get."""

    source: str
    relative: str
    explicit: bool = False

    @property
    def is_s3(self) -> bool:
        """True for ``s3://`` sources."""
        return self.source.startswith("s3://")


@dataclass
class Discovery:
    """What a set of input specs expanded to."""

    items: list[InputItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # non-media files inside folders/prefixes
    missing: list[str] = field(default_factory=list)  # specs that matched nothing at all


def is_media(name: str) -> bool:
    """True when the file name has an audio or video extension we decode."""
    return PurePosixPath(name).suffix.lower() in AUDIO_EXTENSIONS


def _unique(relative: str, taken: set[str]) -> str:
    """``a.wav`` -> ``a-2.wav`` when two inputs would write the same outputs."""
    p = PurePosixPath(relative)
    stem_key = str(p.with_suffix(""))
    candidate, n = relative, 1
    while stem_key in taken:
        n += 1
        candidate = str(p.with_name(f"{p.stem}-{n}{p.suffix}"))
        stem_key = str(PurePosixPath(candidate).with_suffix(""))
    taken.add(stem_key)
    return candidate


def _walk_folder(root: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            yield full, full.relative_to(root).as_posix()


def _glob_base(pattern: str) -> Path:
    """The folder before the first wildcard: glob matches are named relative to it."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def discover(specs: Iterable[str]) -> Discovery:
    """Expand files, folders (recursive, media files only), globs and S3 prefixes.

    A file named explicitly is always tried, whatever its extension; inside
    folders and prefixes, non-media files are skipped and counted.
    """
    found = Discovery()
    taken: set[str] = set()
    seen: set[str] = set()

    def add(source: str, relative: str, explicit: bool) -> None:
        key = source if source.startswith("s3://") else str(Path(source).resolve())
        if key in seen:
            return
        seen.add(key)
        found.items.append(InputItem(source=source, relative=_unique(relative, taken), explicit=explicit))

    for spec in specs:
        if spec.startswith("s3://"):
            n_before = len(found.items) + len(found.skipped)
            for key_uri, rel in list_s3(spec):
                if is_media(rel) or key_uri.rstrip("/") == spec.rstrip("/"):
                    add(key_uri, rel, explicit=key_uri == spec)
                else:
                    found.skipped.append(key_uri)
            if len(found.items) + len(found.skipped) == n_before:
                found.missing.append(spec)
            continue
        path = Path(spec).expanduser()
        if path.is_dir():
            for full, rel in _walk_folder(path):
                if is_media(full.name):
                    add(str(full), rel, explicit=False)
                else:
                    found.skipped.append(str(full))
        elif path.exists():
            add(str(path), path.name, explicit=True)
        elif _GLOB_CHARS & set(spec):
            pattern = os.path.expanduser(spec)
            base = _glob_base(pattern)
            files = [Path(m) for m in sorted(glob.glob(pattern, recursive=True)) if Path(m).is_file()]
            if not files:
                found.missing.append(spec)
            for f in files:  # like a folder: a glob selects the media among its matches
                if not is_media(f.name):
                    found.skipped.append(str(f))
                    continue
                try:
                    rel = f.relative_to(base).as_posix()
                except ValueError:
                    rel = f.name
                add(str(f), rel, explicit=False)
        else:
            found.missing.append(spec)
    return found


# ----------------------------------------------------------------------- S3
def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise UsageError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise UsageError(f"no bucket in {uri!r}: expected s3://bucket/prefix")
    return bucket, key


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client (standard credential chain; ``AWS_ENDPOINT_URL`` honoured)."""
    try:
        import boto3
    except ImportError as exc:
        raise DependencyMissingError("s3:// needs boto3: pip install 'twi-asr[s3]'") from exc
    endpoint = endpoint_url or os.environ.get("TWI_ASR_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _s3_error(exc: Exception, uri: str) -> Exception:
    """Map botocore errors onto our tree with a message that says what to do."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return EnvironmentProblem(
            f"no AWS credentials for {uri}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    if isinstance(exc, EndpointConnectionError):
        return EnvironmentProblem(f"cannot reach the S3 endpoint for {uri}: {exc}")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return InputNotFoundError(f"{uri}: the bucket does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return InputNotFoundError(f"{uri}: no such object")
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return EnvironmentProblem(f"{uri}: access denied ({code}); check the credentials and policy")
        return InputError(f"{uri}: S3 error {code or exc}")
    return exc


def list_s3(uri: str, client: Any = None) -> Iterator[tuple[str, str]]:
    """Every object under a prefix as ``(s3 uri, key relative to the prefix)``, paginated."""
    bucket, prefix = split_s3(uri)
    client = client or s3_client()
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                rel = key[len(prefix) :].lstrip("/") if key != prefix else PurePosixPath(key).name
                yield f"s3://{bucket}/{key}", rel
    except Exception as exc:
        raise _s3_error(exc, uri) from exc


def read_bytes(source: str, client: Any = None) -> bytes:
    """The whole content of a local file or S3 object."""
    if not source.startswith("s3://"):
        return Path(source).read_bytes()
    bucket, key = split_s3(source)
    client = client or s3_client()
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        raise _s3_error(exc, source) from exc


def sync_prefix_to_folder(uri: str, dest: Path, client: Any = None) -> Path:
    """Download every object under ``uri`` into ``dest`` once; skip files whose size and ETag match.

    A small ``.etags`` sidecar records what was fetched, so a rerun is free
    and a changed artifact is fetched again. Files land atomically.
    """
    import json

    bucket, prefix = split_s3(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = client or s3_client()
    dest.mkdir(parents=True, exist_ok=True)
    ledger_path = dest / ".etags.json"
    ledger: dict[str, str] = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    n = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue
                target = dest / rel
                if (
                    target.resolve().parent != dest.resolve()
                    and dest.resolve() not in target.resolve().parents
                ):
                    continue  # a key with '..' must not escape the cache
                n += 1
                stamp = f"{obj['ETag']}:{obj['Size']}"
                if ledger.get(rel) == stamp and target.is_file() and target.stat().st_size == obj["Size"]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                client.download_file(bucket, obj["Key"], str(tmp))
                os.replace(tmp, target)
                ledger[rel] = stamp
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    if n == 0:
        raise InputNotFoundError(f"nothing under {uri}")
    ledger_path.write_text(json.dumps(ledger, indent=1))
    return dest
