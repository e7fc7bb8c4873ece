"""POST /v1/search and /v1/search/batch."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile

from api.actions import deliver, run_search, search_one
from api.deps import Services, engine_slot, get_services, read_upload, require
from api.errors import UploadTooLargeError, status_for
from api.runtime import EngineSlot
from api.schemas import BatchOut, ErrorOut, SearchOut
from gunmatch.state import ApiKey
from index import Filters, normalize_category

router = APIRouter(prefix="/v1", tags=["search"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 413, 415, 422, 429, 503)}


def _filters(category: str | None, threat_only: bool) -> Filters:
    return Filters(
        category=normalize_category(category) if category else None,
        threat=True if threat_only else None,
    )


@router.post("/search", response_model=SearchOut, responses=ERRORS)
async def search(
    image: UploadFile = File(..., description="JPEG, PNG, BMP, TIFF (8/16-bit) or WebP"),
    k: int | None = Form(None, ge=1, le=100),
    modality: Literal["photo", "xray"] | None = Form(None),
    category: str | None = Form(None, description="only references of this category"),
    threat_only: bool = Form(False),
    regions: bool | None = Form(
        None, description="also screen regions of a scan (default: on for X-ray queries)"
    ),
    key: ApiKey = Depends(require("station")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Nearest references for one image, with an alert/review/clear decision."""
    filters = _filters(category, threat_only)
    stream = await read_upload(image, services.settings.max_upload_bytes)
    k = k or services.settings.default_k
    return await search_one(services, slot, key, stream, k, modality, filters, regions)


@router.post("/search/batch", response_model=BatchOut, responses=ERRORS)
async def search_batch(
    images: list[UploadFile] = File(..., description="several images, one field each"),
    k: int | None = Form(None, ge=1, le=100),
    modality: Literal["photo", "xray"] | None = Form(None),
    category: str | None = Form(None),
    threat_only: bool = Form(False),
    key: ApiKey = Depends(require("station")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Several images in one request; a bad image gets its own error, the rest go on.

    The batch is admitted whole (one place in the embedding queue, held to the end) or
    refused with 503 before any image is searched; rows are audited only once every image
    has its answer, so the audit trail holds exactly what the response delivers.
    """
    limit = services.settings.max_batch_images
    if len(images) > limit:
        raise UploadTooLargeError(f"{len(images)} images in one batch; the limit is {limit}")
    filters = _filters(category, threat_only)
    k = k or services.settings.default_k
    out: list[dict] = []
    answers = []
    with services.queue.reserve():
        for upload in images:
            name = upload.filename or "upload"
            try:
                stream = await read_upload(upload, services.settings.max_upload_bytes)
                answers.append((len(out), await run_search(
                    services, slot, stream, k, modality, filters
                )))  # fmt: skip
                out.append({"filename": name, "status": 200})
            except (ValueError, OSError) as exc:  # per-image failure (ImageError: ValueError)
                out.append(
                    {"filename": name, "error": {"detail": str(exc)}, "status": status_for(exc)}
                )
    for i, answer in answers:
        out[i]["result"] = await deliver(services, key, answer)
    return {"results": out}
