"""Every error the service raises becomes JSON ``{"detail": "..."}`` with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.embedding import QueueFullError
from gunmatch.state import DuplicateKeyError, LastAdminError
from index import GalleryError, ItemNotFoundError, ModelMismatchError
from matcher.images import CorruptImageError, ImageTooLargeError, NotAnImageError

log = logging.getLogger(__name__)


class UploadTooLargeError(ValueError):
    """Upload over the byte limit, or too many files."""


class ConflictError(ValueError):
    """The request conflicts with the current state (e.g. a duplicate name)."""


# Order matters: first match wins (subclasses before their bases).
STATUS_FOR: tuple[tuple[type[BaseException], int], ...] = (
    (NotAnImageError, 415),
    (ImageTooLargeError, 413),
    (UploadTooLargeError, 413),
    (CorruptImageError, 422),
    (ItemNotFoundError, 404),
    (KeyError, 404),
    (ModelMismatchError, 409),
    (ConflictError, 409),
    (DuplicateKeyError, 409),
    (LastAdminError, 409),
    (QueueFullError, 503),
    (GalleryError, 500),
    (ValueError, 422),
)


def status_for(exc: BaseException) -> int:
    """HTTP status for a service exception (500 when unknown)."""
    for cls, code in STATUS_FOR:
        if isinstance(exc, cls):
            return code
    return 500


def error_response(exc: BaseException) -> JSONResponse:
    """JSON error for an exception, with Retry-After on 503."""
    code = status_for(exc)
    detail = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after)
    if code == 500:
        log.error("internal error: %s", exc, exc_info=exc)
        detail = "internal error; see the service log"
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "request"


def validation_message(exc: RequestValidationError) -> str:
    """One readable line from pydantic's error list."""
    msgs = []
    for err in exc.errors():
        name = _field(tuple(err.get("loc", ())))
        if err.get("type") == "missing":
            msgs.append(f"missing field '{name}'")
        else:
            msgs.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(msgs) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on an app."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": validation_message(exc), "errors": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        code = exc.status_code
        if code == 400:  # a body the parser could not read (multipart, encoding): invalid input
            code, detail = 422, f"malformed request body: {detail}"
        return JSONResponse({"detail": detail}, code, headers=exc.headers)

    for cls, _code in STATUS_FOR:

        async def _handler(_: Request, exc: Exception) -> JSONResponse:
            return error_response(exc)

        app.add_exception_handler(cls, _handler)

    @app.exception_handler(Exception)
    async def _any(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)
