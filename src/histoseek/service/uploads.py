"""Untrusted bytes in: a size limit on every body, types judged by content, a pixel budget.

Nothing here trusts a file name or a Content-Type header: an upload is a PNG, JPEG, TIFF, BMP
or WebP image because its first bytes say so, and its width x height (read from the header,
before any pixel is decoded) must fit ``max_image_pixels`` (a decompression bomb is refused
with 413 before it can take the memory). Accepted uploads are written to a private temporary
file so the library's own readers open them exactly as they open files on disk.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException
from PIL import Image, UnidentifiedImageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from histoseek.errors import HistoseekError
from histoseek.service.errors import ApiError, error_response
from histoseek.slides.reader import sniff_image

# container → the suffix the library's readers expect for it
IMAGE_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}


def too_large_message(limit: int) -> str:
    return (f"request body is larger than the service's limit of {limit / 2**20:g} MB "
            "(histoseek serve --max-upload-mb)")


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413, whether it declares
    its length (refused before reading) or streams it (cut off at the limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:
            length = None
        if length is not None and length > self.limit:
            await error_response(413, too_large_message(self.limit))(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # FastAPI re-raises an HTTPException from the body
                    raise HTTPException(413, too_large_message(self.limit))
            return message

        await self.app(scope, limited, send)


def check_image(data: bytes, max_pixels: int, what: str = "upload") -> str:
    """The container of an uploaded image, after the type and pixel-budget checks."""
    if not data:
        raise ApiError(400, f"{what} is empty: send an image file")
    kind = sniff_image(data[:16])
    if kind is None:
        raise ApiError(415, f"{what} is not a PNG, JPEG, TIFF, BMP or WebP image (judged by "
                            "its content, not its name or Content-Type)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(413, f"{what}: the {kind} declares more pixels than the service decodes "
                            f"({max_pixels:,} at most; {exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ApiError(400, f"{what}: cannot read the {kind} header ({exc}); is it "
                            "truncated?") from None
    if width * height > max_pixels:
        raise ApiError(413, f"{what}: {width}x{height} px is more than the service decodes "
                            f"({max_pixels:,} pixels at most); send a smaller image")
    return kind


def check_csv(data: bytes, what: str = "upload") -> None:
    """A reports CSV must be UTF-8 text (no NUL bytes) with a header line."""
    if not data.strip():
        raise ApiError(400, f"{what} is empty: send a CSV with a header report_id,text,...")
    if b"\x00" in data[:65536] or sniff_image(data[:16]) is not None:
        raise ApiError(415, f"{what} is binary data, not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(415, f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                       ) from None
    if "," not in text.splitlines()[0]:
        raise ApiError(400, f"{what}: the first line must be a CSV header such as "
                            "report_id,text[,source_id,label]")


@contextmanager
def temporary_file(data: bytes, suffix: str, folder: Path | None = None,
                   upload_name: str | None = None) -> Iterator[Path]:
    """``data`` in a private temporary file (mode 600), deleted on exit.

    A ``HistoseekError`` raised inside that names the temporary file names ``upload_name``
    (the client's file name) instead: the client never saw the server's temporary path.
    """
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="upload-", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    except HistoseekError as exc:
        if upload_name is None or name not in str(exc):
            raise
        raise type(exc)(str(exc).replace(name, upload_name)) from exc
    finally:
        path.unlink(missing_ok=True)
