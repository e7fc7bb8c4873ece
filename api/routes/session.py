"""Web form sign-in: the API key goes into an HttpOnly, same-site session cookie."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from api.deps import SESSION_COOKIE, Services, get_services, require
from api.schemas import ErrorOut, SessionIn, SessionOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/session", tags=["session"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 422)}


@router.post("", response_model=SessionOut, responses=ERRORS)
def sign_in(
    body: SessionIn,
    request: Request,
    response: Response,
    services: Services = Depends(get_services),
) -> dict:
    """Check a key and keep it in a session cookie (no expiry: ends with the browser)."""
    key = services.keys.authenticate(body.api_key.strip())
    if key is None:
        raise HTTPException(401, "invalid or revoked API key")
    response.set_cookie(
        SESSION_COOKIE,
        body.api_key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {"name": key.name, "role": key.role}


@router.get("", response_model=SessionOut, responses=ERRORS)
def whoami(key: ApiKey = Depends(require("station"))) -> dict:
    """The signed-in key's name and role."""
    return {"name": key.name, "role": key.role}


@router.delete("", status_code=204)
def sign_out(response: Response) -> Response:
    """Forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response
