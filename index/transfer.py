"""Copying a gallery to other backends (embedded <-> PostgreSQL + Milvus), verified at the end.

The copy keeps every item as it was (id, dates, who added it, file names) with its vectors and
variant names in their order, and the directory's files (images, thumbnails, the model and its
threat map, calibrations, the PCA transform). Both sides are then counted and digested: one
SHA-256 over every item's metadata and every vector's bytes, in an order that does not depend
on the backend (items by id, each item's vectors in insertion order; the stores' own vec_ids
differ). The copy is good only when counts and digests agree and the new vector index holds
every stored vector.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from index.backends import BackendSpec
from index.gallery import Gallery
from index.itemstore import SQLITE_FILE, StoreSpec
from index.types import GalleryError

# Files that belong to one backend, or to the service state, rather than to the gallery.
NOT_COPIED = (
    "manifest.json",
    SQLITE_FILE,
    f"{SQLITE_FILE}-wal",
    f"{SQLITE_FILE}-shm",
    "index.faiss",
    "index.faiss.meta.json",
    ".lock",
    "state.sqlite",
    "state.sqlite-wal",
    "state.sqlite-shm",
)


@dataclass
class Digest:
    """Counts and one SHA-256 over a gallery's items and vectors."""

    items: int
    vectors: int
    sha256: str


@dataclass
class TransferReport:
    """What a copy wrote, and whether both sides agree."""

    source: Digest
    copy: Digest
    indexed: int  # vectors the copy's vector index holds

    @property
    def ok(self) -> bool:
        """Counts and digests equal, every stored vector indexed."""
        return self.source == self.copy and self.indexed == self.copy.vectors

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"ok": self.ok, **asdict(self)}


def digest(gallery: Gallery) -> Digest:
    """Count and digest a gallery's items (metadata) and vectors (bytes and variant names)."""
    store = gallery.store
    h = hashlib.sha256()
    items = sorted(store.list_items(), key=lambda it: it.item_id)
    n_vectors = 0
    for it in items:
        h.update(json.dumps(it.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        for variant, vec in store.item_vector_rows(it.item_id):
            h.update(b"\x00" + variant.encode() + b"\x00" + vec.astype("<f4").tobytes())
            n_vectors += 1
        h.update(b"\n")
    return Digest(len(items), n_vectors, h.hexdigest())


def _copy_files(src: Path, dest: Path) -> None:
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name in NOT_COPIED or entry.name.startswith("."):
            continue
        target = dest / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target)


def copy_gallery(
    src_root: str | Path,
    dest_root: str | Path,
    vector_store: BackendSpec | None = None,
    item_store: StoreSpec | None = None,
    batch: int = 500,
) -> TransferReport:
    """Copy the gallery at ``src_root`` into a new gallery at ``dest_root`` on the given
    backends (defaults: embedded), then verify both sides; returns the report."""
    src_root, dest_root = Path(src_root), Path(dest_root)
    if (dest_root / "manifest.json").exists():
        raise GalleryError(f"{dest_root} already holds a gallery")
    src = Gallery.open(src_root)
    try:
        _copy_files(src_root, dest_root)
        dest = Gallery.create(
            dest_root,
            src.model_id,
            src.dim,
            src.modality,
            index_config=src.index_config,
            vector_store=vector_store,
            item_store=item_store,
        )
        try:
            if src.manifest.get("transform"):
                dest.adopt_transform(src.manifest["transform"])
            items = src.store.list_items()
            for start in range(0, len(items), batch):
                records = []
                for it in items[start : start + batch]:
                    rows = src.store.item_vector_rows(it.item_id)
                    vecs = [v for _, v in rows]
                    records.append((it, vecs, [name for name, _ in rows]))
                dest.restore(records)
            dest.flush()
            return TransferReport(digest(src), digest(dest), dest.index.ntotal)
        finally:
            dest.close()
    finally:
        src.close()
