"""Re-embed a gallery's stored images with another model into a shadow, then switch to it.

Promotion, rollback and ``gunmatch gallery reindex`` build a shadow, (promotion) gate it, then
``switch`` or ``discard`` it. An embedded gallery's shadow is a whole gallery directory beside
it (``DirShadow``): the switch moves the service's state files into it and swaps the
directories (``index.files.swap_in``). A shared gallery's shadow stays in its database and
vector server (``training.shared_shadow``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index import CALIBRATION_FILE, Gallery, Item, NewItem
from index.files import swap_in
from matcher import Embedder, save_checkpoint
from training.evaluate import Evaluation, evaluate

# Files a gallery build creates; everything else in the directory is service state.
GALLERY_ENTRIES = {
    "manifest.json",
    "gallery.sqlite",
    "gallery.sqlite-wal",
    "gallery.sqlite-shm",
    "index.faiss",
    "images",
    "thumbs",
    "model",
    ".lock",
    "gallery.lock",
    CALIBRATION_FILE,
}


def embedded_batches(
    source: Gallery, items: list[Item], embedder: Embedder, progress: bool = True
) -> Iterator[tuple[list[Item], list[bytes], np.ndarray]]:
    """(items, image bytes, vectors) per batch: each item's stored image embedded anew."""
    batch = embedder.batch_size
    bar = tqdm(total=len(items), unit="img", desc="re-embedding", disable=not progress or None)
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        raws = [(source.root / it.image_file).read_bytes() for it in chunk]
        modality = chunk[0].modality
        if all(it.modality == modality for it in chunk):
            vecs = embedder.embed(raws, modality)
        else:
            vecs = np.stack(
                [embedder.embed([r], it.modality)[0] for r, it in zip(raws, chunk, strict=True)]
            )
        yield chunk, raws, vecs
        bar.update(len(chunk))
    bar.close()


def build_shadow(
    source: Gallery, embedder: Embedder, shadow_dir: Path, progress: bool = True
) -> Gallery:
    """A new gallery at ``shadow_dir`` holding ``source``'s items embedded by ``embedder``."""
    if shadow_dir.exists():
        shutil.rmtree(shadow_dir)
    shadow = Gallery.create(shadow_dir, embedder.model_id, embedder.dim, source.modality)
    save_checkpoint(embedder.model, shadow.model_dir)
    if source.threatmap_dir.is_dir():  # the map does not depend on the embedding model: keep it
        shutil.copytree(source.threatmap_dir, shadow.threatmap_dir)
    for chunk, raws, vecs in embedded_batches(source, source.items(), embedder, progress):
        new = []
        for it, raw, vec in zip(chunk, raws, vecs, strict=True):
            thumb = (source.root / it.thumb_file).read_bytes() if it.thumb_file else b""
            new.append(
                NewItem(
                    vectors=vec[None, :],
                    label=it.label,
                    image_bytes=raw,
                    image_ext=Path(it.image_file).suffix,
                    thumb_bytes=thumb,
                    category=it.category,
                    modality=it.modality,
                    threat=it.threat,
                    make_model=it.make_model,
                    calibre=it.calibre,
                    source=it.source,
                    notes=it.notes,
                    added_by=it.added_by,
                    width=it.width,
                    height=it.height,
                )
            )
        shadow.add(new, embedder.model_id)
    shadow.flush()
    return shadow


def carry_state(old: Path, new: Path) -> list[str]:
    """Move the service's state entries (not gallery files) from ``old`` into ``new``."""
    moved = []
    for entry in sorted(old.iterdir()):
        if entry.name in GALLERY_ENTRIES or entry.name.startswith(".gallery"):
            continue
        dest = new / entry.name
        if dest.exists():
            continue
        os.replace(entry, dest)
        moved.append(entry.name)
    return moved


@dataclass
class DirShadow:
    """An embedded gallery's shadow: a gallery directory beside it."""

    gallery_dir: Path
    path: Path
    items: int

    @classmethod
    def build(
        cls, gallery_dir: Path, embedder: Embedder, tag: str, progress: bool = True
    ) -> DirShadow:
        """Re-embed the gallery into ``.<name>.<tag>`` beside it."""
        path = gallery_dir.with_name(f".{gallery_dir.name}.{tag}")
        with Gallery.open(gallery_dir) as g:
            shadow = build_shadow(g, embedder, path, progress)
            items = len(shadow)
            shadow.close()
        return cls(gallery_dir, path, items)

    @property
    def calibration_file(self) -> Path:
        """Where the candidate's calibration goes before the switch (none: no calibration)."""
        return self.path / CALIBRATION_FILE

    def evaluate(
        self, queries: Path, embedder: Embedder, threats: list[str], progress: bool
    ) -> Evaluation:
        """The candidate's metrics on the fixed query set."""
        return evaluate(self.path, queries, embedder, threats, progress=progress)

    def switch(self) -> dict:
        """Move the service state into the shadow, swap the directories; what was moved."""
        moved = carry_state(self.gallery_dir, self.path)
        swap_in(self.path, self.gallery_dir)
        return {"state_moved": moved}

    def discard(self) -> None:
        """Delete the shadow."""
        shutil.rmtree(self.path, ignore_errors=True)
