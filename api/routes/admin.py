"""Admin: reload the gallery's (promoted) model and calibration; adapt to this scanner.

POST /v1/admin/reload opens the engine again in the background and swaps it in.
POST /v1/admin/adapt starts ``gunmatch adapt`` as a background job on the X-ray scans this
service has declared clear; GET /v1/admin/adapt is its status. An accepted map is installed
and the service reloads itself; a refused one changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import Services, get_services, require
from api.errors import ConflictError
from api.schemas import AdaptIn, AdaptStatusOut, ErrorOut, ReloadOut
from gunmatch.adapt import MIN_SCANS, adapt_gallery, cleared_scans
from gunmatch.state import ApiKey
from training.xray.adapt import AdaptConfig

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 413, 429, 503)}
ADAPT_ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 409, 413, 422, 429, 503)}


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


@router.post("/adapt", response_model=AdaptStatusOut, status_code=202, responses=ADAPT_ERRORS)
async def start_adapt(
    body: AdaptIn,
    key: ApiKey = Depends(require("admin")),
    services: Services = Depends(get_services),
) -> dict:
    """Adapt the threat map on the newest cleared X-ray scans, in the background."""
    holder = services.holder
    if holder.current.engine.gallery.modality != "xray":
        raise ValueError("adaptation is for X-ray galleries")
    if services.adapt.status.state == "running":
        raise ConflictError("an adaptation is already running")
    scans = await run_in_threadpool(
        cleared_scans, services.audit, services.feedback, body.max_scans
    )
    if len(scans) < MIN_SCANS:
        raise ValueError(
            f"need at least {MIN_SCANS} X-ray scans this service declared clear, has {len(scans)}"
        )
    loop = asyncio.get_running_loop()
    s = services.settings
    cfg = replace(AdaptConfig(), minutes=body.minutes, gate_margin=body.gate_margin)
    run = partial(adapt_gallery, holder.gallery_dir, scans, cfg, holder.screening,
                  threads=s.threads, progress=False, runtime=s.runtime,
                  opener=holder.opener)  # fmt: skip

    def on_done(report: dict) -> None:
        accepted = report["gate"]["accepted"]
        if accepted:  # the new map and thresholds, for every request from now on
            asyncio.run_coroutine_threadsafe(holder.reload(), loop).result()
        services.audit.append("admin.adapt", key.name, decision="accepted" if accepted
                              else "refused", results={"scans": len(scans),
                              "map_id": report.get("installed_map_id", "")})  # fmt: skip

    try:
        status = services.adapt.start(run, len(scans), body.minutes * 60, on_done)
    except RuntimeError as exc:
        raise ConflictError(str(exc)) from exc
    services.audit.append("admin.adapt.start", key.name, results={"scans": len(scans)})
    return status.to_dict()


@router.get("/adapt", response_model=AdaptStatusOut, responses=ADAPT_ERRORS)
def adapt_status(
    response: Response,
    _: ApiKey = Depends(require("admin")),
    services: Services = Depends(get_services),
) -> dict:
    """The adaptation job's state, phase, time used and, once finished, its report."""
    response.headers["Cache-Control"] = "no-store"
    return services.adapt.status.to_dict()
