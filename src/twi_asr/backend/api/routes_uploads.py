"""``/v1/uploads``: a presigned PUT URL, so a big file goes straight to storage, not through a form.

With S3 the URL is S3's own presigned PUT. With local storage the backend
answers the PUT itself, at a URL signed with its secret key (HMAC-SHA256 over
the upload id and expiry), so no API key travels with it.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..db.models import Upload, new_id, utcnow
from ..errors import Forbidden, InvalidInput, NotFound, TooLarge
from ..security import sign, verify_signature
from ..services.jobs import check_type, clean_filename
from ..services.views import iso
from .deps import Ctx, CurrentUser
from .errors import ERRORS, error_doc
from .forms import FILE, INT, STR, body_doc, object_schema, read_json

__all__ = ["router"]

router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=ERRORS)

UPLOAD_BODY = body_doc(
    {
        "application/json": object_schema(
            {
                "filename": STR,
                "content_type": {"anyOf": [STR, {"type": "null"}]},
                "size": {"anyOf": [INT | {"minimum": 0}, {"type": "null"}]},
            },
            required=("filename",),
        )
    }
)


@router.post(
    "",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    summary="Get a URL to PUT a file to",
    responses={
        413: error_doc("The announced size is over the upload limit"),
        415: error_doc("The announced type is not audio or video"),
    },
)
async def create_upload(request: Request, ctx: Ctx, user: CurrentUser) -> JSONResponse:
    """Announce a file (name, type, size); PUT it to the answer's ``url``, then POST /v1/jobs {upload_id}."""
    body = await read_json(request)
    if not isinstance(body.get("filename"), str):
        raise InvalidInput("filename is required: the file's name, as text", param="filename")
    if body.get("content_type") is not None and not isinstance(body["content_type"], str):
        raise InvalidInput("content_type must be a media type such as audio/wav", param="content_type")
    filename = clean_filename(body["filename"])
    content_type = str(body.get("content_type") or "application/octet-stream")
    check_type(filename, content_type)
    limit = int(ctx.settings.max_upload_mb * 1024 * 1024)
    size = body.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidInput("size must be the file's length in bytes", param="size")
    if size is not None and size > limit:
        raise TooLarge(f"{filename!r} has {size} bytes, over the {ctx.settings.max_upload_mb:g} MB limit")
    ttl = ctx.settings.upload_url_ttl_s
    row = Upload(
        id=new_id("upl"),  # the column default only runs at INSERT; the URL needs the id now
        user_id=user.id,
        filename=filename,
        content_type=content_type,
        storage_key="",
        max_bytes=limit,
        expires_at=utcnow() + timedelta(seconds=ttl),
    )
    row.storage_key = f"uploads/{row.id}/{filename}"
    url = await run_in_threadpool(
        ctx.blobs.presign_put, row.storage_key, content_type=content_type, expires_s=ttl
    )
    headers = {"Content-Type": content_type}
    if url is None:
        expires = str(int(time.time()) + ttl)
        base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
        signature = sign(ctx.secret, row.id, expires)
        url = f"{base}/v1/uploads/{row.id}/content?expires={expires}&signature={signature}"
    with ctx.db.session() as s:
        s.add(row)
    return JSONResponse(
        {
            "upload_id": row.id,
            "url": url,
            "method": "PUT",
            "headers": headers,
            "expires_at": iso(row.expires_at),
            "max_bytes": limit,
        },
        status_code=201,
    )


@router.put(
    "/{upload_id}/content",
    status_code=204,
    openapi_extra=body_doc({"application/octet-stream": FILE, "audio/*": FILE, "video/*": FILE}),
    summary="Receive an upload (local storage only)",
    responses={
        403: error_doc("Bad or expired signature"),
        413: error_doc("More bytes than the upload's limit"),
    },
)
async def put_content(
    upload_id: str, request: Request, ctx: Ctx, expires: str = "", signature: str = ""
) -> Response:
    """The signed URL's target: the body is streamed to a temp file, then to storage."""
    if not expires.isdigit() or not verify_signature(ctx.secret, signature, upload_id, expires):
        raise Forbidden("the upload URL's signature is wrong", code="invalid_signature")
    if int(expires) < time.time():
        raise Forbidden("the upload URL has expired: ask POST /v1/uploads for a new one", code="url_expired")
    with ctx.db.session() as s:
        row: Any = s.get(Upload, upload_id)
    if row is None:
        raise NotFound(f"no upload {upload_id!r}", code="upload_not_found")
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > row.max_bytes:
                raise TooLarge(f"the upload is over its {row.max_bytes} bytes")
            spool.write(chunk)
        spool.seek(0)
        await run_in_threadpool(
            ctx.blobs.put_stream,
            row.storage_key,
            spool,
            max_bytes=row.max_bytes,
            content_type=row.content_type,
        )
    return Response(status_code=204)
