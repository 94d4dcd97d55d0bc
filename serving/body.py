"""Reading an image upload with a hard size limit: raw body or multipart/form-data.

The limit is enforced twice: a declared `Content-Length` above it is refused before reading, and
the streamed body is counted chunk by chunk (chunked uploads have no length), so a request never
holds more than `limit` bytes in memory.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from wsdeploy.serving.api import RequestError

__all__ = ["check_upload_headers", "read_image_body"]

logger = logging.getLogger(__name__)

FILE_FIELDS = ("image", "file")  # preferred multipart field names; else the first file part


def check_upload_headers(request: Any, limit: int, raw_types: tuple[str, ...]) -> str:
    """Refuse a wrong content type (415) or a declared length over `limit` (413) before reading.

    Returns:
        'multipart' or 'raw'.
    """
    content_type = request.headers.get("content-type", "application/octet-stream")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        kind = "multipart"
    elif media.startswith("image/") or media in raw_types:
        kind = "raw"
    else:
        raise RequestError(
            415, "unsupported_media_type",
            f"send the image as the raw body (Content-Type image/* or application/octet-stream) "
            f"or as multipart/form-data, not {_short(media)}",
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, "bad_content_length", f"invalid Content-Length {_short(declared)}") from None
        if size > limit:
            raise RequestError(413, "body_too_large", f"the body is {size} bytes; the limit is {limit}")
    return kind


def _short(value: str, limit: int = 100) -> str:
    """A header value quoted in an error, cut to `limit` characters (headers can be 16 kB)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(value)} characters)"


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise RequestError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        yield chunk


async def read_image_body(request: Any, limit: int, raw_types: tuple[str, ...]) -> bytes | None:
    """The image bytes of a request, or None if the client disconnected during the upload.

    Raises:
        RequestError: 415 content type, 413 over `limit`, 400 multipart without a file part.
    """
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect

    kind = check_upload_headers(request, limit, raw_types)
    try:
        if kind == "raw":
            chunks = [chunk async for chunk in _limited(request.stream(), limit)]
            return b"".join(chunks)
        parser = MultiPartParser(request.headers, _limited(request.stream(), limit), max_files=1, max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise RequestError(400, "bad_multipart", f"could not parse the multipart body: {exc.message}") from None
        try:
            uploads = [(name, v) for name, v in form.multi_items() if not isinstance(v, str)]
            if not uploads:
                raise RequestError(
                    400, "no_file_part", f"the multipart body has no file part (send it as one of {FILE_FIELDS})"
                )
            upload = next((v for name, v in uploads if name in FILE_FIELDS), uploads[0][1])
            return await upload.read()
        finally:
            await form.close()
    except ClientDisconnect:
        logger.info("client disconnected during the upload")
        return None
