"""``gunmatch gallery reindex``: re-embed a gallery with another model and switch it over."""

from __future__ import annotations

from pathlib import Path

from index import Gallery, GalleryError
from index.files import swap_in
from matcher import Embedder, load_model
from training.shadow import build_shadow


def reindex(
    gallery_dir: Path,
    model: str | Path,
    threads: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Re-embed every item of ``gallery_dir`` with ``model`` and switch the gallery over."""
    gallery_dir = Path(gallery_dir)
    shadow_dir = gallery_dir.with_name(f".{gallery_dir.name}.reindex")
    with Gallery.open(gallery_dir) as source:
        if source.is_shared:  # the shadow would be embedded and replace the shared gallery
            raise GalleryError(
                f"{gallery_dir} is a shared gallery (PostgreSQL/Milvus); re-indexing it in place "
                "is not supported yet: 'gunmatch gallery export' it, reindex the embedded copy, "
                "then 'gunmatch gallery import' that"
            )
        embedder = Embedder(load_model(model), batch_size=batch_size, threads=threads)
        shadow = build_shadow(source, embedder, shadow_dir, progress)
        count = len(shadow)
        shadow.close()
    swap_in(shadow_dir, gallery_dir)
    return {"items": count, "model_id": embedder.model_id}
