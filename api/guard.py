"""Request guard (pure ASGI, outermost): key first, then a streamed cap on every body.

A request that carries a body must show a valid key or session (and, signed in by cookie
only, come from the service's own origin) before a byte of it is read (sign-in, whose body is
the key, is the one exception); a refused request is answered with
``Connection: close`` so the server reads nothing more of it. Every body, declared or chunked,
is counted as it streams in and cut off at its route's limit with 413.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import (
    API_KEY_HEADER,
    PRINCIPAL_SCOPE_KEY,
    authenticate,
    check_csrf,
    client_of,
    session_token,
)
from gunmatch.settings import Settings

JSON_LIMIT = 64 * 1024  # any JSON body: key names, feedback, item edits, sign-in
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and form fields around the images
# Bodies read without a key: sign-in (the key is in it).
PUBLIC_BODIES = frozenset({("POST", "/v1/session")})


def body_limit(method: str, path: str, s: Settings) -> int:
    """The largest body a route accepts (the README lists them)."""
    if method == "POST":
        if path == "/v1/search/batch":
            return s.max_upload_bytes * s.max_batch_images + FORM_OVERHEAD
        if path == "/v1/compare":
            return 2 * s.max_upload_bytes + FORM_OVERHEAD
        if path in ("/v1/search", "/v1/gallery/items"):
            return s.max_upload_bytes + FORM_OVERHEAD
    return JSON_LIMIT


class BodyTooLargeError(HTTPException):
    """The body passed its route's limit while streaming in."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body exceeds the limit of {limit} bytes for this endpoint",
            headers={"Connection": "close"},
        )


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length != "0")


async def _refuse(exc: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    headers = {**(exc.headers or {}), "Connection": "close"}
    await JSONResponse({"detail": exc.detail}, exc.status_code, headers)(scope, receive, send)


class RequestGuard:
    """Authenticate before reading, then count the body against ``limit_for(method, path)``."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope.get("method", "GET"), scope.get("path", "")
        limit = self.limit_for(method, path)
        if _has_body(headers):
            try:
                if (method, path) not in PUBLIC_BODIES:
                    await self._authenticate(scope, headers)
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > limit):
                    raise BodyTooLargeError(limit)
            except HTTPException as exc:
                await _refuse(exc, scope, receive, send)
                return
        await self._stream(scope, receive, send, limit, not _has_body(headers))

    async def _authenticate(self, scope: Scope, headers: Headers) -> None:
        services = getattr(scope["app"].state, "services", None)
        if services is None:
            raise HTTPException(503, "the service is still starting", headers={"Retry-After": "2"})
        principal = await run_in_threadpool(
            authenticate, services.keys, services.sessions, services.throttle,
            headers.get(API_KEY_HEADER), session_token(headers), client_of(scope),
        )  # fmt: skip
        check_csrf(scope, headers, principal, services.settings.allowed_origins)
        scope[PRINCIPAL_SCOPE_KEY] = principal

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, limit: int, body_done: bool
    ) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen, body_done
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:  # answered before the body ended: read no more of it
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except BodyTooLargeError as exc:
            if started:
                raise
            await _refuse(exc, scope, receive, send)
