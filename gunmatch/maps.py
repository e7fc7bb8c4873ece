"""A gallery's X-ray threat map: install one (checked by loading it), or remove it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from index import Gallery
from index.files import swap_in
from index.gallery import MODEL_DIR
from matcher.threatmap import ThreatMap, load_threatmap, save_threatmap

PREVIOUS = "threatmap.prev"  # GALLERY/model/threatmap.prev: the map an install replaced


def previous_threatmap(gallery_root: str | Path) -> Path:
    """Where an install keeps the map it replaced (``gunmatch gallery threatmap`` with this
    path puts it back)."""
    return Path(gallery_root) / MODEL_DIR / PREVIOUS


def _check_xray(gallery: Gallery) -> None:
    if gallery.modality != "xray":
        raise ValueError(
            f"{gallery.root} is a {gallery.modality} gallery; threat maps are for X-ray"
        )


def install_threatmap(gallery: Gallery, source: str | Path | ThreatMap) -> ThreatMap:
    """Install a saved map directory (or an in-memory map) as the gallery's threat map.

    The map is loaded first (refused when it is not one, or was trained on other trunk
    weights), written beside the destination and swapped in, so a running service never
    reads half a map; the map it replaces is kept as ``model/threatmap.prev``.
    """
    _check_xray(gallery)
    if not isinstance(source, ThreatMap):
        load_threatmap(source)  # refuse what is not a map for this trunk before copying
    dest = gallery.threatmap_dir
    staging = Path(tempfile.mkdtemp(prefix=".threatmap-", dir=dest.parent))
    try:
        if isinstance(source, ThreatMap):
            save_threatmap(source, staging)
        else:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        tmap = load_threatmap(staging)
        if dest.exists():
            previous = previous_threatmap(gallery.root)
            shutil.rmtree(previous, ignore_errors=True)
            shutil.copytree(dest, previous)
            swap_in(staging, dest)
        else:
            staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tmap


def remove_threatmap(gallery: Gallery) -> bool:
    """Remove the gallery's threat map; False when it had none."""
    _check_xray(gallery)
    existed = gallery.threatmap_dir.exists()
    shutil.rmtree(gallery.threatmap_dir, ignore_errors=True)
    return existed
