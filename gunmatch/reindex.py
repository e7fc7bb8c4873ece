"""``gunmatch gallery reindex``: re-embed a gallery with another model and switch it over;
telling the replicas of a shared gallery to reload after any switch of its model."""

from __future__ import annotations

from pathlib import Path

from gunmatch.state import open_state
from matcher import Embedder, load_model
from training.promote import build_shadow_for


def reindex(
    gallery_dir: Path,
    model: str | Path,
    threads: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Re-embed every item of ``gallery_dir`` with ``model`` and switch the gallery over (on
    its own backend: an embedded gallery keeps its state files, a shared one its database)."""
    gallery_dir = Path(gallery_dir).resolve()
    embedder = Embedder(load_model(model), batch_size=batch_size, threads=threads)
    shadow = build_shadow_for(gallery_dir, embedder, "reindex", progress)
    switched = shadow.switch()
    return {"items": shadow.items, "model_id": embedder.model_id, **switched}


def reload_replicas(gallery_dir: Path) -> int | None:
    """Bump a shared gallery's reload generation, so every replica serving it reloads its
    model, collection and calibration; None for an embedded gallery (nothing to watch)."""
    state = open_state(gallery_dir)
    try:
        return state.request_reload()
    finally:
        state.close()
