"""Who is calling: an API key (``X-API-Key``) or a web session cookie, throttled on failure,
and the same-origin rule for state-changing requests that only a cookie authenticates.

Used twice per request at most: by the request guard (before any body is read) and by the
``require(role)`` dependency (which reuses the guard's answer when there was one).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import Scope

from api.throttle import FailedAuthThrottle
from gunmatch.state import ApiKey, KeyStore, SessionStore

API_KEY_HEADER = "X-API-Key"
SESSION_COOKIE = "gunmatch_session"
PRINCIPAL_SCOPE_KEY = "gunmatch.principal"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": "ApiKey"}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller; ``via_cookie`` when a session cookie (not a header) carried it."""

    key: ApiKey
    via_cookie: bool


def client_of(scope: Scope) -> str:
    """The peer address failed attempts are counted against."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def session_token(headers: Headers) -> str | None:
    """The session cookie's value, if the request carries one."""
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


def check_throttle(throttle: FailedAuthThrottle, client: str) -> None:
    """429 with Retry-After while ``client`` has too many recent failures."""
    wait = throttle.retry_after(client)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many failed sign-in attempts from this client; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def authenticate(
    keys: KeyStore,
    sessions: SessionStore,
    throttle: FailedAuthThrottle,
    api_key: str | None,
    token: str | None,
    client: str,
) -> Principal:
    """The caller behind a header key or a session token (the header wins); 401 / 429."""
    check_throttle(throttle, client)
    if api_key:
        key, via_cookie = keys.authenticate(api_key), False
    elif token:
        key, via_cookie = sessions.authenticate(token), True
    else:
        raise HTTPException(
            401, "missing API key: send it in the X-API-Key header or sign in", headers=CHALLENGE
        )
    if key is None:
        throttle.fail(client)
        what = "session expired or signed out" if via_cookie else "invalid or revoked API key"
        raise HTTPException(401, what, headers=CHALLENGE)
    return Principal(key, via_cookie)


def request_origin(headers: Headers) -> str | None:
    """The Origin header, else the scheme://host of the Referer, else None."""
    origin = headers.get("origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    parts = urlsplit(headers.get("referer", ""))
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}".lower()
    return "null" if origin == "null" else None


def own_origin(scope: Scope, headers: Headers) -> str:
    """scheme://host of the service as this request addressed it."""
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()


def check_same_origin(
    scope: Scope, headers: Headers, allowed: list[str], required: bool
) -> None:
    """403 unless the request comes from the service's own pages (or an allowed origin).

    ``required``: a missing Origin and Referer is refused too (cookie-authenticated writes);
    otherwise only a foreign one is.
    """
    origin = request_origin(headers)
    if origin is None and not required:
        return
    ok = {own_origin(scope, headers), *(a.rstrip("/").lower() for a in allowed)}
    if origin not in ok:
        raise HTTPException(
            403,
            "cross-site request refused: a request signed in by cookie must come from the "
            "service's own pages (send the key in X-API-Key from other clients)",
        )


def check_csrf(scope: Scope, headers: Headers, principal: Principal, allowed: list[str]) -> None:
    """Cookie-authenticated state-changing requests must come from the service's own origin."""
    if principal.via_cookie and scope.get("method", "GET") not in SAFE_METHODS:
        check_same_origin(scope, headers, allowed, required=True)
