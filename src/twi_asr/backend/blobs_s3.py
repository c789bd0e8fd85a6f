"""The S3 :class:`~.blobs.BlobStore`: any S3-compatible bucket (AWS, MinIO, moto) under a prefix.

The client comes from :func:`twi_asr.storage.s3_client`, so the backend and the
CLI share one credential chain (``AWS_*`` variables, profiles, instance roles)
and one endpoint rule (``endpoint_url``, then ``TWI_ASR_S3_ENDPOINT_URL``,
then ``AWS_ENDPOINT_URL``). boto3 is imported only when a store is used.

Uploads go through ``upload_fileobj`` (multipart past 5 MiB) with a bounded
number of parts in memory, behind a reader that counts bytes and stops past
the limit; an upload cut short this way is aborted, so S3 keeps no object
and no dangling multipart parts. Every botocore error leaves as a
:mod:`.errors` class with a message that says what to do.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import UsageError
from ..storage import s3_client, s3_error, split_s3
from .blobs_base import CHUNK, _copy_to_file, check_key
from .errors import BackendError, Forbidden, InvalidInput, NotFound, StorageUnavailable, TooLarge

__all__ = ["S3BlobStore", "read_s3_uri"]

_PART = 5 << 20  # multipart part size: S3's minimum, so memory stays low (1 GiB = 205 parts)
_PARTS_IN_MEMORY = 2  # parts read ahead while others upload: memory ~ 4 x _PART (20 MiB) per upload
_MISSING_KEY = ("NoSuchKey", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _unavailable(exc: BaseException, uri: str) -> BackendError:
    """Map a boto3/botocore error met while using the store onto our tree (the store's own view).

    Missing key -> NotFound ``blob_not_found``; a missing bucket, denied access,
    bad credentials, an unreachable endpoint -> StorageUnavailable (503) with
    the fix; anything unexpected -> StorageUnavailable naming it.
    """
    if isinstance(exc, BackendError):
        return exc
    code = _code(exc)
    if code == "NoSuchBucket":
        return StorageUnavailable(
            f"storage {uri}: the bucket does not exist: create it, or fix TWI_ASR_STORAGE / the endpoint"
        )
    if code in _MISSING_KEY:
        return NotFound(f"no stored object {uri}", code="blob_not_found")
    mapped = s3_error(exc, uri)
    if mapped is exc:  # not botocore: s3transfer, urllib3, a socket
        return StorageUnavailable(f"storage {uri}: S3 failed ({type(exc).__name__}: {exc}); retry later")
    return StorageUnavailable(f"storage {mapped}")


class _CountingReader(io.RawIOBase):
    """A non-seekable view of ``source`` that counts bytes and raises TooLarge past ``limit``.

    Non-seekable on purpose: s3transfer then reads one part at a time instead
    of asking for the length up front. Reads are filled (a socket-like source
    gives short ones): s3transfer takes a short first read for the whole
    file and would then read the rest into memory in one go. A failure of ``source`` itself is kept
    in ``source_error`` so it can be re-raised as it was (it is the client's
    doing, not the storage's).
    """

    def __init__(self, source: BinaryIO, limit: int | None) -> None:
        self.source, self.limit, self.count = source, limit, 0
        self.too_large: TooLarge | None = None
        self.source_error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, short only at the end: s3transfer takes a short read for the end."""
        if self.too_large is not None:
            raise self.too_large
        try:
            block = self._fill(-1 if size is None else size)
        except BaseException as exc:
            self.source_error = exc
            raise
        self.count += len(block)
        if self.limit is not None and self.count > self.limit:
            self.too_large = TooLarge(f"the upload is over the limit of {self.limit} bytes")
            raise self.too_large
        return block

    def _fill(self, size: int) -> bytes:
        first = self.source.read(size)
        if size < 0 or not first or len(first) >= size:
            return first
        blocks, got = [first], len(first)
        while got < size and (block := self.source.read(min(size - got, CHUNK))):
            blocks.append(block)
            got += len(block)
            if self.limit is not None and self.count + got > self.limit:
                break  # no need to buffer a whole part of an upload already over its limit
        return b"".join(blocks)

    def readinto(self, buffer: Any) -> int:
        block = self.read(len(buffer))
        buffer[: len(block)] = block
        return len(block)


class _Body(io.RawIOBase):
    """A botocore StreamingBody as a proper binary stream; read errors become StorageUnavailable."""

    def __init__(self, body: Any, uri: str) -> None:
        self._body, self._uri = body, uri

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            block = self._body.read(len(buffer))
        except Exception as exc:
            raise _unavailable(exc, self._uri) from exc
        buffer[: len(block)] = block
        return len(block)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3BlobStore:
    """A :class:`~.blobs.BlobStore` in ``s3://bucket/prefix``; keys live at ``prefix/key``."""

    def __init__(
        self, location: str, *, endpoint_url: str | None = None, public_endpoint_url: str | None = None
    ) -> None:
        try:
            self.bucket, prefix = split_s3(location)
        except UsageError as exc:
            raise InvalidInput(f"storage: {exc}") from exc
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix, what="prefix")
        self.location = location
        self.endpoint_url = endpoint_url
        # Presigned URLs are for clients: behind compose or a proxy the store's address seen from
        # outside (http://localhost:9000) is not the one the backend uses (http://s3:9000).
        self.public_endpoint_url = public_endpoint_url

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location!r})"

    def _client(self) -> Any:
        try:
            return s3_client(self.endpoint_url)
        except Exception as exc:  # boto3 not installed, a missing AWS_PROFILE
            raise StorageUnavailable(f"storage {self.location}: {exc}") from exc

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _uri(self, full: str) -> str:
        return f"s3://{self.bucket}/{full}"

    def put_stream(
        self, key: str, source: BinaryIO, *, max_bytes: int | None = None, content_type: str | None = None
    ) -> int:
        """See :meth:`~.blobs.BlobStore.put_stream`: multipart, about 4 parts (20 MiB) in memory at most."""
        from boto3.s3.transfer import TransferConfig

        full = self._key(key)
        client = self._client()
        config = TransferConfig(
            multipart_threshold=_PART, multipart_chunksize=_PART, max_concurrency=_PARTS_IN_MEMORY
        )
        config.max_in_memory_upload_chunks = _PARTS_IN_MEMORY
        reader = _CountingReader(source, max_bytes)
        extra = {"ContentType": content_type} if content_type else None
        try:
            client.upload_fileobj(reader, self.bucket, full, ExtraArgs=extra, Config=config)
        except BaseException as exc:
            if reader.too_large is not None:
                self._abort_uploads(client, full)
                raise reader.too_large from None
            if reader.source_error is not None:
                self._abort_uploads(client, full)
                raise reader.source_error from None
            if isinstance(exc, Exception):
                raise _unavailable(exc, self._uri(full)) from exc
            raise
        return reader.count

    def _abort_uploads(self, client: Any, full: str) -> None:
        """Abort multipart uploads of ``full`` still open (s3transfer aborts its own; this makes sure).

        Keys are unique per job and upload, so no other writer of ``full`` is cut off.
        """
        try:
            listing = client.list_multipart_uploads(Bucket=self.bucket, Prefix=full)
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == full:
                    client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload["UploadId"])
        except Exception:  # best effort: a lifecycle rule on the bucket should clean up what is left
            pass

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """See :meth:`~.blobs.BlobStore.put_bytes`."""
        full = self._key(key)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._client().put_object(Bucket=self.bucket, Key=full, Body=data, **extra)
        except Exception as exc:
            raise _unavailable(exc, self._uri(full)) from exc

    def open(self, key: str) -> BinaryIO:
        """See :meth:`~.blobs.BlobStore.open`: one GET, read as it streams (1 MiB buffer)."""
        full = self._key(key)
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=full)["Body"]
        except BackendError:
            raise
        except Exception as exc:
            raise _unavailable(exc, self._uri(full)) from exc
        return io.BufferedReader(_Body(body, self._uri(full)), buffer_size=CHUNK)  # type: ignore[return-value]

    def read_bytes(self, key: str) -> bytes:
        """See :meth:`~.blobs.BlobStore.read_bytes`."""
        with self.open(key) as f:
            return f.read()

    def download_to(self, key: str, dest: Path) -> int:
        """See :meth:`~.blobs.BlobStore.download_to`."""
        with self.open(key) as src:
            return _copy_to_file(src, Path(dest))

    def size(self, key: str) -> int | None:
        """See :meth:`~.blobs.BlobStore.size` (one HEAD)."""
        full = self._key(key)
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=full)
        except BackendError:
            raise
        except Exception as exc:
            if _code(exc) in _MISSING_KEY:
                return None
            raise _unavailable(exc, self._uri(full)) from exc
        return int(head["ContentLength"])

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`~.blobs.BlobStore.delete_prefix`: list, then delete in batches of 1000."""
        folder = self._key(prefix.rstrip("/")) + "/"
        client = self._client()
        count = 0
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if not keys:
                    continue
                answer = client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StorageUnavailable(
                        f"storage {self._uri(folder)}: {len(answer['Errors'])} objects not deleted "
                        f"({first.get('Code')}: {first.get('Message')}); check the bucket policy"
                    )
                count += len(keys)
        except BackendError:
            raise
        except Exception as exc:
            raise _unavailable(exc, self._uri(folder)) from exc
        return count

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> str | None:
        """A presigned PUT URL; the client must send the same ``Content-Type`` header."""
        full = self._key(key)
        try:
            signer = s3_client(self.public_endpoint_url) if self.public_endpoint_url else self._client()
            return str(
                signer.generate_presigned_url(
                    "put_object",
                    Params={"Bucket": self.bucket, "Key": full, "ContentType": content_type},
                    ExpiresIn=int(expires_s),
                    HttpMethod="PUT",
                )
            )
        except BackendError:
            raise
        except Exception as exc:  # no credentials: nothing to sign with
            raise _unavailable(exc, self._uri(full)) from exc

    def presign_get(self, key: str, *, expires_s: int, content_type: str | None = None) -> str | None:
        """A presigned GET URL (S3 answers Range requests, so a player can seek)."""
        full = self._key(key)
        params = {"Bucket": self.bucket, "Key": full}
        if content_type:
            params["ResponseContentType"] = content_type
        try:
            signer = s3_client(self.public_endpoint_url) if self.public_endpoint_url else self._client()
            return str(signer.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires_s)))
        except BackendError:
            raise
        except Exception as exc:  # no credentials: nothing to sign with
            raise _unavailable(exc, self._uri(full)) from exc

    def local_path(self, key: str) -> Path | None:
        """None: objects are in S3."""
        return None

    def check(self) -> None:
        """One HEAD of the bucket: reachable, exists, and these credentials may use it."""
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except BackendError:
            raise
        except Exception as exc:
            code = _code(exc)
            if code in ("NoSuchBucket", "404", "NotFound"):
                raise StorageUnavailable(
                    f"storage {self.location}: the bucket {self.bucket!r} does not exist: create it, "
                    "or fix TWI_ASR_STORAGE / the S3 endpoint"
                ) from exc
            if code in _DENIED:
                raise StorageUnavailable(
                    f"storage {self.location}: access denied to the bucket {self.bucket!r}: give these "
                    "credentials s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it"
                ) from exc
            raise _unavailable(exc, self.location) from exc


def read_s3_uri(
    uri: str, dest: Path, *, max_bytes: int | None = None, endpoint_url: str | None = None
) -> int:
    """Stream any ``s3://bucket/key`` the backend's credentials can read into ``dest``; return its size.

    The user named this object, so its failures are the user's to fix: a bad
    URI is :class:`InvalidInput` (``invalid_s3_uri``), a missing bucket or key
    :class:`NotFound` (``s3_object_not_found``), denied access
    :class:`Forbidden` (``s3_access_denied``). An unreachable endpoint or bad
    backend credentials stay :class:`StorageUnavailable`. Over ``max_bytes``:
    :class:`TooLarge` before any byte is fetched when S3 gives the length, and
    ``dest`` is never left half-written.
    """
    try:
        bucket, key = split_s3(uri)
    except UsageError as exc:
        raise InvalidInput(str(exc), code="invalid_s3_uri") from exc
    if not key or key.endswith("/"):
        raise InvalidInput(
            f"{uri}: name one object (s3://bucket/key), not a bucket or folder", code="invalid_s3_uri"
        )
    try:
        client = s3_client(endpoint_url)
        answer = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code = _code(exc)
        if code in ("NoSuchBucket", *_MISSING_KEY):
            raise NotFound(f"{uri}: no such object", code="s3_object_not_found") from exc
        if code in _DENIED:
            raise Forbidden(
                f"{uri}: access denied: the backend's credentials may not read it (grant s3:GetObject)",
                code="s3_access_denied",
            ) from exc
        mapped = s3_error(exc, uri)
        if isinstance(mapped, UsageError):
            raise InvalidInput(str(mapped), code="invalid_s3_uri") from exc
        raise _unavailable(exc, uri) from exc
    body = answer["Body"]
    length = answer.get("ContentLength")
    if max_bytes is not None and length is not None and int(length) > max_bytes:
        body.close()
        raise TooLarge(f"{uri} is {int(length)} bytes, over the limit of {max_bytes}")
    with io.BufferedReader(_Body(body, uri), buffer_size=CHUNK) as src:
        stream: BinaryIO = _CountingReader(src, max_bytes)  # type: ignore[assignment]
        return _copy_to_file(stream, Path(dest))
