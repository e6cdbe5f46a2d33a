"""Every error leaves the service as ``{"error": "...", "status": N}``: bad input is a 4xx with
a message, never a 500; only a bug is a 500 (its traceback goes to the server log)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from histoseek.errors import (
    EmptyQueryError,
    HistoseekError,
    InputError,
    LibraryError,
    MissingMppError,
    NoTextTowerError,
    SlideReadError,
    UnknownEncoderError,
    WeightsNotFoundError,
)

log = logging.getLogger("histoseek.service")

# most specific first: the first class an error is an instance of gives its status
STATUS_OF: tuple[tuple[type[HistoseekError], int], ...] = (
    (EmptyQueryError, 400),
    (InputError, 400),
    (MissingMppError, 422),  # a well-formed request the file cannot answer without --mpp
    (SlideReadError, 422),  # includes UnsupportedImageError: known type, unusable pixels
    (NoTextTowerError, 422),  # the library's encoder cannot embed text
    (LibraryError, 409),  # includes LibraryMismatchError and "another process is writing"
    (UnknownEncoderError, 503),  # the service is misconfigured, not the request
    (WeightsNotFoundError, 503),
)


class ApiError(Exception):
    """An error with its HTTP status, raised by the service's own checks."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status,
                        headers=headers)


def status_of(exc: HistoseekError) -> int:
    return next((code for cls, code in STATUS_OF if isinstance(exc, cls)), 400)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """Malformed JSON is a 400; a field of the wrong type or range a 422 naming the field."""
    errors = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return 400, f"malformed JSON body: {ctx.get('error', err.get('msg', 'invalid'))}"
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "invalid request: " + "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the one JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(HistoseekError)
    async def _histoseek(_: Request, exc: HistoseekError) -> JSONResponse:
        return error_response(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        sent = request.headers.get("content-type", "")
        whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
        if whole_body and sent and "json" not in sent.split(";")[0]:
            return error_response(415, f"this endpoint takes a JSON body (Content-Type: "
                                       f"application/json), not {sent.split(';')[0]}")
        status, message = _validation_message(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # the router's own
            message = f"no endpoint {request.method} {request.url.path}; /docs lists them"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"{request.method} is not allowed on {request.url.path}; /docs lists " \
                      "the methods"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
