"""Application services shared by the CLI and the HTTP API: open, build, search, compare."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index import Filters, Gallery, GalleryError, Match, ModelMismatchError
from matcher import Embedder, load_checkpoint, load_model, save_checkpoint
from matcher.images import ImageSource, is_image_path
from matcher.model import DEFAULT_BACKBONE
from matcher.preprocess import check_modality
from matcher.threatmap import ThreatMap, is_threatmap, load_threatmap

log = logging.getLogger(__name__)

THREATMAP_DIR = "threatmap"  # a gallery's threat map lives in GALLERY/model/threatmap/


@dataclass
class Engine:
    """A gallery together with the embedder that built it (and its X-ray threat map, if any)."""

    gallery: Gallery
    embedder: Embedder
    threatmap: ThreatMap | None = None

    def close(self) -> None:
        """Flush and close the gallery."""
        self.gallery.close()


def open_engine(
    gallery_dir: str | Path,
    model: str | Path | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    max_pixels: int | None = None,
    runtime: str = "torch",
) -> Engine:
    """Open a gallery with its own model (or ``model``, which must match it)."""
    gallery_dir = Path(gallery_dir)
    gallery = Gallery.open(gallery_dir)
    try:
        if model is None:
            if not (gallery.model_dir / "meta.json").is_file():
                raise GalleryError(f"{gallery_dir} has no model/meta.json; re-build the gallery")
            net = load_checkpoint(gallery.model_dir)
        else:
            net = load_model(model)
        if net.model_id != gallery.model_id:
            raise ModelMismatchError(
                f"gallery {gallery_dir} was built with model {gallery.model_id}, but "
                f"{model or gallery.model_dir} is {net.model_id}; re-index it with "
                f"'gunmatch gallery reindex --gallery {gallery_dir} --model {model or 'MODEL'}'"
            )
        tmap = open_threatmap(gallery, threads)
    except BaseException:
        gallery.store.close()
        raise
    kwargs = {"max_pixels": max_pixels} if max_pixels else {}
    embedder = Embedder(net, batch_size=batch_size, threads=threads, runtime=runtime, **kwargs)
    return Engine(gallery, embedder, tmap)


def threatmap_dir(gallery: Gallery) -> Path:
    """Where a gallery keeps its threat map (``gunmatch gallery threatmap`` installs one)."""
    return gallery.model_dir / THREATMAP_DIR


def open_threatmap(gallery: Gallery, threads: int | None = None) -> ThreatMap | None:
    """The gallery's threat map, run by ONNX Runtime on ``threads``; None when it has none.

    Only X-ray galleries use one. Where ONNX export or ORT fails, the map runs in eager
    torch (same logits, several times slower), with a warning.
    """
    path = threatmap_dir(gallery)
    if gallery.modality != "xray" or not is_threatmap(path):
        return None
    tmap = load_threatmap(path)
    try:
        return tmap.use_onnx(threads)
    except Exception as exc:  # noqa: BLE001 - any export/runtime failure: keep the torch path
        log.warning("threat map %s runs in eager torch: ONNX Runtime failed (%s)", path, exc)
        return tmap


def create_engine(
    gallery_dir: str | Path,
    model: str | Path | None = None,
    modality: str = "photo",
    threads: int | None = None,
    batch_size: int = 32,
) -> Engine:
    """Open a gallery, or create it (recording its model) when the directory holds none."""
    gallery_dir = Path(gallery_dir)
    if (gallery_dir / "manifest.json").exists():
        return open_engine(gallery_dir, model, threads, batch_size)
    net = load_model(model or DEFAULT_BACKBONE)
    embedder = Embedder(net, batch_size=batch_size, threads=threads)
    # Record the model first: its id is final once its checkpoint bytes are written.
    save_checkpoint(net, gallery_dir / "model")
    gallery = Gallery.create(gallery_dir, net.model_id, net.dim, check_modality(modality))
    return Engine(gallery, embedder)


def match_to_dict(m: Match) -> dict:
    """The public shape of one match (CLI JSON and API)."""
    it = m.item
    return {
        "rank": m.rank,
        "item_id": it.item_id,
        "label": it.label,
        "category": it.category,
        "make_model": it.make_model,
        "calibre": it.calibre,
        "threat": it.threat,
        "score": round(float(m.score), 4),
    }


@dataclass
class QueryResult:
    """Matches for one query image."""

    query: str
    matches: list[Match] = field(default_factory=list)
    elapsed_ms: float = 0.0
    error: str | None = None
    vector: np.ndarray | None = None


def search_images(
    engine: Engine,
    sources: list[tuple[str, ImageSource]],
    k: int = 10,
    modality: str | None = None,
    filters: Filters | None = None,
) -> list[QueryResult]:
    """Embed and search named images one by one; a bad image yields an error, not an exception."""
    modality = check_modality(modality or engine.gallery.modality)
    results = []
    for name, source in sources:
        start = time.perf_counter()
        try:
            vec = engine.embedder.embed([source], modality)
        except (ValueError, OSError) as exc:  # ImageError is a ValueError
            results.append(QueryResult(query=name, error=str(exc)))
            continue
        matches = engine.gallery.search(vec, k, filters)[0]
        elapsed = (time.perf_counter() - start) * 1000.0
        results.append(QueryResult(name, matches, round(elapsed, 2), vector=vec[0]))
    return results


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded recursively to their image files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f)))
        else:
            out.append(p)
    return out
