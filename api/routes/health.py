"""Liveness, readiness and Prometheus metrics (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def readyz(request: Request) -> Response:
    """The model and gallery are loaded and answering."""
    services = getattr(request.app.state, "services", None)
    if services is None or not services.holder.ready:
        return JSONResponse({"status": "starting", "detail": "not ready"}, 503)
    with services.holder.acquire() as slot:
        items = len(slot.engine.gallery)
        return JSONResponse(
            {
                "status": "ready",
                "model_id": slot.engine.embedder.model_id,
                "items": items,
                "reloads": services.holder.reloads,
            }
        )


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        return Response("", media_type=CONTENT_TYPE_LATEST)
    services.metrics.queue_depth.set(services.queue.depth)
    if services.holder.ready:
        services.metrics.gallery_items.set(len(services.holder.current.engine.gallery))
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
