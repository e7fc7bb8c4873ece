"""Audit trail (analyst): list records, verify the chain, fetch a kept query image."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from api.deps import Services, get_services, require
from api.schemas import AuditListOut, ErrorOut, VerifyOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/audit", tags=["audit"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 422)}


@router.get("", response_model=AuditListOut, responses=ERRORS)
def list_audit(
    sha256: str | None = None,
    action: str | None = None,
    limit: int = 50,
    offset: int = 0,
    _: ApiKey = Depends(require("analyst")),
    services: Services = Depends(get_services),
) -> dict:
    """Records newest first, optionally for one image hash or action."""
    if not (1 <= limit <= 1000) or offset < 0:
        raise ValueError("limit must be 1..1000 and offset >= 0")
    rows = services.audit.list(limit, offset, sha256=sha256, action=action)
    return {"total": services.audit.count(), "records": [r.to_dict() for r in rows]}


@router.get("/verify", response_model=VerifyOut, responses=ERRORS)
def verify(
    _: ApiKey = Depends(require("analyst")), services: Services = Depends(get_services)
) -> dict:
    """Check the hash chain."""
    return services.audit.verify().to_dict()


@router.get("/{record_id}/image", response_class=FileResponse, responses=ERRORS)
def query_image(
    record_id: int,
    _: ApiKey = Depends(require("analyst")),
    services: Services = Depends(get_services),
) -> FileResponse:
    """The query image a record kept (404 once past retention)."""
    path = services.audit.image_path(services.audit.get(record_id))
    if path is None:
        raise KeyError(f"audit record {record_id} has no kept image (past retention?)")
    return FileResponse(path, headers={"Cache-Control": "private"})
