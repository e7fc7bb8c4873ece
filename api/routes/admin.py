"""POST /v1/admin/reload: open the gallery's (promoted) model in the background and swap."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import Services, get_services, require
from api.schemas import ErrorOut, ReloadOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 413, 429, 503)}


@router.post("/reload", response_model=ReloadOut, responses=ERRORS)
async def reload(
    key: ApiKey = Depends(require("admin")), services: Services = Depends(get_services)
) -> dict:
    """Reload model and calibration; requests in flight finish on the old engine."""
    slot = await services.holder.reload()
    engine = slot.engine
    services.metrics.set_model(engine.embedder.model_id)
    services.metrics.gallery_items.set(len(engine.gallery))
    services.audit.append("admin.reload", key.name, model_id=engine.embedder.model_id)
    return {
        "model_id": engine.embedder.model_id,
        "items": len(engine.gallery),
        "reloads": services.holder.reloads,
        "calibrated": slot.calibration.calibrated,
    }
