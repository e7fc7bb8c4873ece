"""The web form's pages (static files, no CDN): search at /, gallery at /gallery, API docs at
/docs (Swagger UI from the package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """Search page."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/gallery")
def gallery_page() -> FileResponse:
    """Analyst gallery page."""
    return FileResponse(STATIC / "gallery.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def api_docs() -> FileResponse:
    """Swagger UI over /openapi.json, its assets served from the package."""
    return FileResponse(STATIC / "swagger" / "index.html", headers={"Cache-Control": "no-cache"})
