"""Where inputs come from and outputs go: local paths, globs and ``s3://``.

Discovery turns what a user typed (files, folders, globs, S3 prefixes) into
a list of :class:`InputItem`, each with a *relative name* that outputs mirror,
so ``recordings/day1/a.wav`` lands at ``OUT/day1/a.srt``. S3 goes through
boto3 with the standard credential chain; ``AWS_ENDPOINT_URL`` points it at
any S3-compatible endpoint.
"""

from __future__ import annotations

import glob
import io
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

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


_endpoint_override: str | None = None
_clients: dict[tuple[str | None, tuple[str, ...]], Any] = {}
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)
_CHUNK = 1 << 20  # streamed reads go 1 MiB at a time
_SPOOL_MAX = 64 << 20  # above this, a streamed object spills from memory to a temp file


def set_endpoint_url(url: str | None) -> None:
    """Point every S3 client made from now on at ``url`` (the CLI's ``--s3-endpoint-url``).

    ``None`` restores the default order: ``TWI_ASR_S3_ENDPOINT_URL``, then
    boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` and config
    files, then AWS itself.
    """
    global _endpoint_override
    url = (url or "").strip() or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"S3 endpoint {url!r}: expected a URL like http://127.0.0.1:9000")
    _endpoint_override = url


def resolve_endpoint_url(explicit: str | None = None) -> str | None:
    """The endpoint we pass to boto3 (None: boto3 decides, reading ``AWS_ENDPOINT_URL`` itself)."""
    return explicit or _endpoint_override or os.environ.get("TWI_ASR_S3_ENDPOINT_URL") or None


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client: the standard credential chain, and the endpoint from :func:`resolve_endpoint_url`.

    Clients are thread-safe and slow-ish to make (tens of ms), so one is
    kept per endpoint and AWS environment; a changed ``AWS_*`` variable gets
    a fresh client.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise DependencyMissingError("s3:// needs boto3: pip install 'twi-asr[s3]'") from exc
    endpoint = resolve_endpoint_url(endpoint_url)
    key = (endpoint, tuple(os.environ.get(name, "") for name in _CLIENT_ENV))
    client = _clients.get(key)
    if client is None:
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        try:
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        except Exception as exc:  # a named AWS_PROFILE that does not exist, a bad endpoint URL...
            raise s3_error(exc, endpoint or "s3") from exc
        _clients[key] = client
    return client


def _credential_hint() -> str:
    return (
        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), "
        "or AWS_PROFILE, or run `aws configure`"
    )


def s3_error(exc: BaseException, uri: str) -> Exception:
    """Map a botocore error onto our tree, with a one-line message that says what to do.

    - no credentials -> :class:`EnvironmentProblem` naming the variables and ``aws configure``
    - endpoint unreachable -> :class:`EnvironmentProblem` naming the endpoint
    - NoSuchBucket -> :class:`InputNotFoundError` ("the bucket does not exist")
    - NoSuchKey / 404 -> :class:`InputNotFoundError`
    - AccessDenied / 403, bad keys -> :class:`EnvironmentProblem`
    Anything that is not a botocore error is returned as it is.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, NoCredentialsError):
        return EnvironmentProblem(f"no AWS credentials found for {uri}: {_credential_hint()}")
    if isinstance(exc, PartialCredentialsError):
        return EnvironmentProblem(f"incomplete AWS credentials for {uri} ({exc}): {_credential_hint()}")
    if isinstance(exc, ProfileNotFound):
        return EnvironmentProblem(f"{exc} (named by AWS_PROFILE): run `aws configure --profile NAME`")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        where = exc.kwargs.get("endpoint_url") or "the S3 endpoint"
        return EnvironmentProblem(
            f"cannot reach the S3 endpoint {where} for {uri}: check AWS_ENDPOINT_URL / --s3-endpoint-url "
            "and the network"
        )
    if isinstance(exc, ReadTimeoutError):
        return EnvironmentProblem(f"the S3 endpoint timed out reading {uri}: {exc}")
    if isinstance(exc, ParamValidationError):
        return UsageError(f"{uri}: not a valid S3 location ({' '.join(str(exc).split())})")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return InputNotFoundError(f"{uri}: the bucket does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return InputNotFoundError(f"{uri}: no such object")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return EnvironmentProblem(f"{uri}: AWS rejected the credentials ({code}): {_credential_hint()}")
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            return EnvironmentProblem(
                f"{uri}: access denied ({code or 403}); these credentials lack permission here: "
                "check the IAM or bucket policy"
            )
        if code == "InvalidBucketName":
            return UsageError(f"{uri}: not a valid bucket name")
        message = " ".join(str(error.get("Message") or exc).split())
        return InputError(f"{uri}: S3 error {code}: {message}" if code else f"{uri}: S3 error: {message}")
    if isinstance(exc, BotoCoreError):
        return EnvironmentProblem(f"{uri}: S3 failed: {exc}")
    return exc  # type: ignore[return-value]


_s3_error = s3_error  # the old private name


def check_bucket(bucket: str, *, prefix: str = "", client: Any = None, uri: str | None = None) -> None:
    """Probe the bucket with a one-key listing; fail early if it is missing, unreachable or the keys are bad.

    Used before writing outputs, so a typo in ``-o s3://...`` fails before
    any audio is decoded. A missing bucket is an :class:`EnvironmentProblem`
    here (the destination is missing, not an input). A plain AccessDenied on
    the listing is let through: write-only roles (``s3:PutObject`` without
    ``s3:ListBucket``) are a normal way to publish results, and a write that
    is really denied fails on its own with a clear message.
    """
    from botocore.exceptions import ClientError

    uri = uri or f"s3://{bucket}"
    client = client or s3_client()
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404", "NotFound"):
            raise EnvironmentProblem(f"{uri}: the bucket does not exist (create it first)") from exc
        if code in ("AccessDenied", "403"):
            return
        raise s3_error(exc, uri) from exc
    except Exception as exc:
        raise s3_error(exc, uri) from exc


def s3_exists(uri: str, *, client: Any = None) -> bool:
    """True when the object exists (HEAD); False on 404; other failures raise mapped errors."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    client = client or s3_client()
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise s3_error(exc, uri) from exc
    except Exception as exc:
        raise s3_error(exc, uri) from exc
    return True


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
