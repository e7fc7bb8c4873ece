"""POST /v1/compare."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile

from api import actions
from api.deps import Services, engine_slot, get_services, read_upload, require
from api.runtime import EngineSlot
from api.schemas import CompareOut, ErrorOut
from gunmatch.state import ApiKey

router = APIRouter(prefix="/v1", tags=["compare"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 413, 415, 422, 429, 503)}


@router.post("/compare", response_model=CompareOut, responses=ERRORS)
async def compare(
    image_a: UploadFile = File(...),
    image_b: UploadFile | None = File(None, description="second image, or give item_id"),
    item_id: str | None = Form(None, max_length=64, description="gallery item to compare with"),
    modality: Literal["photo", "xray"] | None = Form(None),
    key: ApiKey = Depends(require("station")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Similarity of two images, or of an image and a gallery item, and a verdict."""
    if (image_b is None) == (not item_id):
        raise ValueError("give exactly one of 'image_b' (a second image) or 'item_id'")
    limit = services.settings.max_upload_bytes
    a = await read_upload(image_a, limit)
    b = await read_upload(image_b, limit) if image_b is not None else None
    return await actions.compare(services, slot, key, a, b, item_id, modality)
