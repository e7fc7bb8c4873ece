"""Audit trail (analyst): list records, verify the chain, fetch a kept query image."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse

from api.deps import Services, get_services, require
from api.schemas import ID_MAX, OFFSET_MAX, AuditListOut, ErrorOut, VerifyOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/audit", tags=["audit"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 413, 422, 429, 503)}


@router.get("", response_model=AuditListOut, responses=ERRORS)
def list_audit(
    sha256: str | None = None,
    action: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=OFFSET_MAX),
    _: ApiKey = Depends(require("analyst")),
    services: Services = Depends(get_services),
) -> dict:
    """Records newest first, optionally for one image hash or action."""
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
    record_id: int = Path(ge=1, le=ID_MAX),
    _: ApiKey = Depends(require("analyst")),
    services: Services = Depends(get_services),
) -> FileResponse:
    """The query image a record kept (404 once past retention)."""
    path = services.audit.image_path(services.audit.get(record_id))
    if path is None:
        raise KeyError(f"audit record {record_id} has no kept image (past retention?)")
    return FileResponse(path, headers={"Cache-Control": "private"})
