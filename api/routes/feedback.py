"""POST/GET /v1/feedback: analysts judge results; stored for retraining."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query

from api import actions
from api.deps import Services, engine_slot, get_services, require
from api.runtime import EngineSlot
from api.schemas import OFFSET_MAX, ErrorOut, FeedbackIn, FeedbackListOut, FeedbackOut
from gunmatch.references import ReferenceMeta
from gunmatch.state import ApiKey
from index import normalize_category

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])
ERRORS = {c: {"model": ErrorOut} for c in (401, 403, 404, 409, 413, 422, 429, 503)}


@router.post("", response_model=FeedbackOut, status_code=201, responses=ERRORS)
async def post_feedback(
    body: FeedbackIn,
    key: ApiKey = Depends(require("analyst")),
    slot: EngineSlot = Depends(engine_slot),
    services: Services = Depends(get_services),
) -> dict:
    """Mark a result of an earlier query right or wrong; optionally add the query as a reference."""
    ref = None
    if body.add_reference is not None:
        r = body.add_reference
        ref = ReferenceMeta(
            label=r.label,
            category=normalize_category(r.category),
            threat=r.threat,
            make_model=r.make_model,
            calibre=r.calibre,
            notes=r.notes,
            source=f"feedback:{body.query_id}",
        )
    fb = await actions.record_feedback(
        services, slot, key, body.query_id, body.item_id, body.verdict, body.correct_label, ref
    )
    return fb.to_dict()


@router.get("", response_model=FeedbackListOut, responses=ERRORS)
def list_feedback(
    verdict: Literal["correct", "wrong"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=OFFSET_MAX),
    _: ApiKey = Depends(require("analyst")),
    services: Services = Depends(get_services),
) -> dict:
    """Stored feedback, oldest first."""
    rows = services.feedback.list(verdict=verdict, limit=limit, offset=offset)
    return {"total": services.feedback.count(), "feedback": [r.to_dict() for r in rows]}
