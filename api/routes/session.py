"""Web form sign-in: the key is checked once and the browser gets a server-side session token
(HttpOnly, same-site cookie; the key itself never goes into a cookie). Sign-out revokes it;
admins list and revoke sessions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import SESSION_COOKIE, check_same_origin, check_throttle, client_of
from api.deps import Services, get_services, require
from api.schemas import ID_MAX, ErrorOut, SessionIn, SessionOut, SessionRecordOut
from gunmatch.state import ApiKey

router = APIRouter(tags=["session"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 413, 422, 429, 503)}


@router.post("/v1/session", response_model=SessionOut, responses=ERRORS)
def sign_in(
    body: SessionIn,
    request: Request,
    response: Response,
    services: Services = Depends(get_services),
) -> dict:
    """Check a key and open a session (cookie lifetime: the session's, GUNMATCH_SESSION_TTL_S)."""
    check_same_origin(request.scope, request.headers, services.settings.allowed_origins, False)
    client = client_of(request.scope)
    check_throttle(services.throttle, client)
    key = services.keys.authenticate(body.api_key.strip())
    if key is None:
        services.throttle.fail(client)
        raise HTTPException(401, "invalid or revoked API key")
    ttl = services.settings.session_ttl_s
    session, token = services.sessions.create(key, ttl)
    services.audit.append("session.create", key.name, results={"session_id": session.id})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {"name": key.name, "role": key.role}


@router.get("/v1/session", response_model=SessionOut, responses=ERRORS)
def whoami(key: ApiKey = Depends(require("station"))) -> dict:
    """The signed-in key's name and role."""
    return {"name": key.name, "role": key.role}


@router.delete("/v1/session", status_code=204, responses=ERRORS)
async def sign_out(request: Request, services: Services = Depends(get_services)) -> Response:
    """End this browser's session on the server and forget the cookie."""
    check_same_origin(request.scope, request.headers, services.settings.allowed_origins, False)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(services.sessions.revoke_token, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/v1/sessions", response_model=list[SessionRecordOut], responses=ERRORS)
def list_sessions(
    active: bool = False,
    _: ApiKey = Depends(require("admin")),
    services: Services = Depends(get_services),
) -> list[dict]:
    """Web sessions (never their tokens), oldest first; ``active`` for live ones only."""
    return [s.to_dict() for s in services.sessions.list(active_only=active)]


@router.delete("/v1/sessions/{session_id}", response_model=SessionRecordOut, responses=ERRORS)
def revoke_session(
    session_id: int = Path(ge=1, le=ID_MAX),
    key: ApiKey = Depends(require("admin")),
    services: Services = Depends(get_services),
) -> dict:
    """End a session by id."""
    record = services.sessions.revoke(session_id)
    services.audit.append("session.revoke", key.name, results={"session_id": session_id})
    return record.to_dict()
