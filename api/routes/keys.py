"""API key management (admin): list, create, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from api.deps import Services, get_services, require
from api.schemas import ErrorOut, KeyCreatedOut, KeyIn, KeyOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 409, 413, 422, 429, 503)}


@router.get("", response_model=list[KeyOut], responses=ERRORS)
def list_keys(
    _: ApiKey = Depends(require("admin")), services: Services = Depends(get_services)
) -> list[dict]:
    """All keys (never their secrets)."""
    return [k.to_dict() for k in services.keys.list()]


@router.post("", response_model=KeyCreatedOut, status_code=201, responses=ERRORS)
def create_key(
    body: KeyIn, key: ApiKey = Depends(require("admin")), services: Services = Depends(get_services)
) -> dict:
    """A new key; the secret is in this response only (409 if the name is taken)."""
    record, secret = services.keys.create(body.name, body.role)
    services.audit.append("keys.create", key.name, results={"name": record.name, "role": body.role})
    return {"key": secret, "record": record.to_dict()}


@router.delete("/{name}", response_model=KeyOut, responses=ERRORS)
def revoke_key(
    name: str = Path(min_length=1, max_length=200),
    key: ApiKey = Depends(require("admin")),
    services: Services = Depends(get_services),
) -> dict:
    """Revoke a key by name, and its web sessions (409 for the last active admin key)."""
    record = services.keys.revoke(name)
    ended = services.sessions.revoke_key(record.id)
    services.audit.append("keys.revoke", key.name, results={"name": name, "sessions": ended})
    return record.to_dict()
