"""Gallery items: list, add, read, edit, delete, thumbnails."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from api import actions
from api.deps import Services, engine_slot, get_services, read_upload, require
from api.runtime import EngineSlot
from api.schemas import (
    OFFSET_MAX,
    ErrorOut,
    GalleryInfoOut,
    ItemCreatedOut,
    ItemListOut,
    ItemOut,
    ItemPatch,
)
from gunmatch.references import ReferenceMeta, list_items
from gunmatch.state import ApiKey
from index import CATEGORIES, Filters, ItemNotFoundError, normalize_category

router = APIRouter(prefix="/v1/gallery", tags=["gallery"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 409, 413, 415, 422, 429, 503)}


@router.get("", response_model=GalleryInfoOut, responses=ERRORS)
def gallery_info(
    _: ApiKey = Depends(require("station")), slot: EngineSlot = Depends(engine_slot)
) -> dict:
    """Model, size, labels and the category vocabulary (Chinese and English names)."""
    info = slot.engine.gallery.info()
    info["categories"] = [{"key": c.key, "zh": c.zh, "en": c.en} for c in CATEGORIES]
    return info


@router.get("/items", response_model=ItemListOut, responses=ERRORS)
def items(
    category: str | None = None,
    threat: bool | None = None,
    modality: Literal["photo", "xray"] | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=OFFSET_MAX),
    _: ApiKey = Depends(require("station")),
    slot: EngineSlot = Depends(engine_slot),
) -> dict:
    """A page of items, oldest first."""
    filters = Filters(
        category=normalize_category(category) if category else None,
        modality=modality,
        threat=threat,
    )
    total, page = list_items(slot.engine, filters, limit, offset)
    return {"total": total, "items": [actions.item_dict(i) for i in page]}


@router.post("/items", response_model=ItemCreatedOut, status_code=201, responses=ERRORS)
async def add_item(
    response: Response,
    image: UploadFile = File(...),
    label: str = Form(..., min_length=1, max_length=200),
    category: str = Form("other"),
    threat: bool = Form(False),
    make_model: str = Form("", max_length=200),
    calibre: str = Form("", max_length=100),
    notes: str = Form("", max_length=2000),
    modality: Literal["photo", "xray"] | None = Form(None),
    key: ApiKey = Depends(require("analyst")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Add one reference image with its metadata (an image already present is not re-added)."""
    meta = ReferenceMeta(
        label=label,
        category=normalize_category(category),
        threat=threat,
        make_model=make_model,
        calibre=calibre,
        notes=notes,
        modality=modality,
    )
    stream = await read_upload(image, services.settings.max_upload_bytes)
    item_id, added = await actions.add_item(services, slot, key, stream, meta)
    if not added:
        response.status_code = 200
    item = slot.engine.gallery.get(item_id)
    return {"item": actions.item_dict(item), "added": added}


@router.get("/items/{item_id}", response_model=ItemOut, responses=ERRORS)
def get_item(
    item_id: str, _: ApiKey = Depends(require("station")), slot: EngineSlot = Depends(engine_slot)
) -> dict:
    """One item."""
    return actions.item_dict(slot.engine.gallery.get(item_id))


@router.patch("/items/{item_id}", response_model=ItemOut, responses=ERRORS)
async def patch_item(
    item_id: str,
    patch: ItemPatch,
    key: ApiKey = Depends(require("analyst")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Edit an item's metadata."""
    changes = patch.model_dump(exclude_none=True)
    if not changes:
        raise ValueError("nothing to change: send at least one field")
    item = await run_in_threadpool(slot.engine.gallery.update, item_id, **changes)
    await run_in_threadpool(
        services.audit.append, "gallery.update", key.name, "", item.sha256, "",
        slot.engine.embedder.model_id, "updated", {"item_id": item_id, "changes": changes},
    )  # fmt: skip
    return actions.item_dict(item)


@router.delete("/items/{item_id}", status_code=204, responses=ERRORS)
async def delete_item(
    item_id: str,
    key: ApiKey = Depends(require("analyst")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> Response:
    """Remove an item from the gallery."""
    item = await run_in_threadpool(slot.engine.gallery.get, item_id)
    await run_in_threadpool(slot.engine.gallery.remove, [item_id])
    await run_in_threadpool(
        services.audit.append, "gallery.delete", key.name, "", item.sha256, "",
        slot.engine.embedder.model_id, "deleted", {"item_id": item_id, "label": item.label},
    )  # fmt: skip
    services.metrics.gallery_items.set(len(slot.engine.gallery))
    return Response(status_code=204)


@router.get(
    "/items/{item_id}/thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
def thumbnail(
    item_id: str, _: ApiKey = Depends(require("station")), slot: EngineSlot = Depends(engine_slot)
) -> FileResponse:
    """The item's JPEG thumbnail."""
    item = slot.engine.gallery.get(item_id)
    path = slot.engine.gallery.root / item.thumb_file if item.thumb_file else None
    if path is None or not path.is_file():
        raise ItemNotFoundError(f"item {item_id} has no thumbnail")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private"})
