"""API key management (admin): list, create, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import Services, get_services, require
from api.errors import ConflictError
from api.schemas import ErrorOut, KeyCreatedOut, KeyIn, KeyOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 409, 422)}


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
    """A new key; the secret is in this response only."""
    try:
        record, secret = services.keys.create(body.name, body.role)
    except ValueError as exc:
        raise ConflictError(str(exc)) from None
    services.audit.append("keys.create", key.name, results={"name": record.name, "role": body.role})
    return {"key": secret, "record": record.to_dict()}


@router.delete("/{name}", response_model=KeyOut, responses=ERRORS)
def revoke_key(
    name: str, key: ApiKey = Depends(require("admin")), services: Services = Depends(get_services)
) -> dict:
    """Revoke a key by name."""
    record = services.keys.revoke(name)
    services.audit.append("keys.revoke", key.name, results={"name": name})
    return record.to_dict()
