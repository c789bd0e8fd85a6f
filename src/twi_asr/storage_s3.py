"""S3 connection for inputs and outputs: endpoint, client, and botocore errors mapped onto ours.

Why a module of its own: everything that talks to S3 (listing, reads, downloads, the output
sink, the backend's blob store) needs the same client and the same one-line error
messages; only this module knows about boto3's credential chain and ``AWS_ENDPOINT_URL``.
boto3 is imported when a client is made, never at import time.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import DependencyMissingError, EnvironmentProblem, InputError, InputNotFoundError, UsageError


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
