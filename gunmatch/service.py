"""Open or create a gallery together with its model (and X-ray threat map): the ``Engine``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gunmatch.database import create_shared_state, shared_specs
from gunmatch.maps import install_threatmap
from gunmatch.settings import get_settings
from gunmatch.shipped import default_threatmap, default_xray_model
from index import Gallery, GalleryError, ModelMismatchError
from matcher import Embedder, load_checkpoint, load_model, save_checkpoint
from matcher.images import is_image_path
from matcher.model import DEFAULT_BACKBONE
from matcher.preprocess import check_modality
from matcher.threatmap import ThreatMap, is_threatmap, load_threatmap

log = logging.getLogger(__name__)


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


def open_threatmap(gallery: Gallery, threads: int | None = None) -> ThreatMap | None:
    """The gallery's threat map, run by ONNX Runtime on ``threads``; None when it has none.

    Only X-ray galleries use one. Where ONNX export or ORT fails, the map runs in eager
    torch (same logits, several times slower), with a warning.
    """
    path = gallery.threatmap_dir
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
    shipped: bool = True,
) -> Engine:
    """Open a gallery, or create it (recording its model) when the directory holds none.

    A new gallery keeps its items on PostgreSQL when GUNMATCH_DATABASE_URL is set and its
    vectors on Milvus when GUNMATCH_VECTOR_URI is (else the embedded SQLite and FAISS files).
    A new X-ray gallery gets the project's shipped X-ray model (unless ``model`` names
    another) and threat map, where this install has them (``shipped=False``: neither).
    """
    gallery_dir = Path(gallery_dir)
    if (gallery_dir / "manifest.json").exists():
        return open_engine(gallery_dir, model, threads, batch_size)
    modality = check_modality(modality)
    xray_defaults = shipped and modality == "xray"
    if model is None and xray_defaults:
        model = default_xray_model()
    net = load_model(model or DEFAULT_BACKBONE)
    embedder = Embedder(net, batch_size=batch_size, threads=threads)
    # Owner-only from the start (the gallery holds reference images and the audit state).
    (gallery_dir / "model").mkdir(mode=0o700, parents=True, exist_ok=True)
    gallery_dir.chmod(0o700)
    # Record the model first: its id is final once its checkpoint bytes are written.
    save_checkpoint(net, gallery_dir / "model")
    settings = get_settings()
    shared = shared_specs(settings.database_url, settings.vector_uri)
    gallery = Gallery.create(gallery_dir, net.model_id, net.dim, modality, **shared)
    create_shared_state(gallery_dir)  # a shared gallery's keys, audit chain, feedback
    shipped_map = default_threatmap() if xray_defaults else None
    if shipped_map is not None:
        install_threatmap(gallery, shipped_map)
    return Engine(gallery, embedder, open_threatmap(gallery, threads))


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded recursively to their image files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_path(f)))
        else:
            out.append(p)
    return out
