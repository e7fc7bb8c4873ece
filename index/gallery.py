"""A gallery is a directory: vector index, SQLite metadata, images, thumbnails, manifest.

Layout::

    DIR/manifest.json   format, model_id, dim, default modality, counts, index generation
    DIR/gallery.sqlite  items, vectors (source of truth), change log
    DIR/index.faiss     FAISS cache of the vectors table at manifest["index_generation"]
                        (kind and parameters from manifest["index"], see index.factory);
                        or, when manifest["vector_store"] names ``milvus``, a Milvus
                        collection shared by every process (see index.backends)
    DIR/transform.npz   optional PCA/whitening applied to vectors and queries (manifest
                        ["transform"], see index.transform)
    DIR/images/         original reference images, content-addressed by sha256
    DIR/thumbs/         JPEG thumbnails
    DIR/model/          the model that built the gallery (meta.json [+ weights.pt])

Writes take an exclusive file lock, commit to SQLite in one transaction (atomic), then update
the in-memory index. The index file is rewritten on ``flush``; a reader whose index is older
than the database replays the change log, so a crash at any point loses nothing committed
and leaves nothing half-added.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.backends import DEFAULT_BACKEND, BackendSpec, backend_class
from index.categories import normalize_category
from index.consistency import IndexSync, _now
from index.factory import IndexConfig, resolve_kind
from index.files import atomic_write
from index.itemstore import DEFAULT_STORE, StoreSpec, open_item_store
from index.pgstore import PgStore
from index.store import EDITABLE_FIELDS, Item, Store
from index.transform import PcaTransform, fit_pca, load_transform, save_transform
from index.types import (
    AddResult,
    Filters,
    GalleryError,
    ItemNotFoundError,
    Match,
    ModelMismatchError,
    NewItem,
    best_per_item,
)

MANIFEST_FORMAT = "gunmatch-gallery/1"
# The gallery's layout: its model record, the X-ray threat map inside it, its thresholds.
MODEL_DIR = "model"
THREATMAP_DIR = "threatmap"
CALIBRATION_FILE = "calibration.json"


class Gallery(IndexSync):
    """Reference gallery on disk; use ``Gallery.create`` or ``Gallery.open``."""

    def __init__(self, root: Path, manifest: dict, store: Store | PgStore) -> None:
        self.root = root
        self.manifest = manifest
        self.store = store
        self._lock = threading.RLock()
        self._writing = False
        self._closed = False
        self._count: tuple[int, int] | None = None  # (index generation, item count)
        self.index_config = IndexConfig.from_dict(manifest.get("index"))
        self.transform: PcaTransform | None = load_transform(root, manifest.get("transform"))
        self.backend_spec = BackendSpec.from_manifest(manifest)

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | Path,
        model_id: str,
        dim: int,
        modality: str = "photo",
        index_config: IndexConfig | None = None,
        vector_store: BackendSpec | None = None,
        item_store: StoreSpec | None = None,
    ) -> Gallery:
        """Make a new, empty gallery directory (it must not already hold a gallery).

        ``vector_store`` selects the vector backend and ``item_store`` where items and vectors
        are kept (defaults: embedded FAISS and SQLite, recorded as nothing in the manifest so
        such galleries stay exactly as before).
        """
        root = Path(root)
        if (root / "manifest.json").exists():
            raise GalleryError(f"{root} already holds a gallery")
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("images", "thumbs"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
        manifest = {
            "format": MANIFEST_FORMAT,
            "model_id": model_id,
            "dim": int(dim),
            "modality": modality,
            "index_type": resolve_kind(index_config or IndexConfig(), 0),
            "index": (index_config or IndexConfig()).to_dict(),
            "index_generation": 0,
            "count": 0,
            "vectors": 0,
            "created_at": _now(),
        }
        spec = vector_store or BackendSpec()
        backend_cls = backend_class(spec.backend)  # an unknown name fails before any write
        if spec.backend != DEFAULT_BACKEND:
            manifest["vector_store"] = spec.to_dict()
        store_spec = item_store or StoreSpec()
        if store_spec.backend != DEFAULT_STORE:
            manifest["item_store"] = store_spec.to_dict()
        store = open_item_store(store_spec, root, create=True)
        try:
            shared = store_spec.backend != DEFAULT_STORE
            if shared and (store.generation() or store.count_items()):
                raise GalleryError(f"schema {store_spec.schema} already holds a gallery")
            gallery = cls(root, manifest, store)
            gallery.backend = backend_cls.create(gallery, spec)
        except BaseException:
            store.close()
            raise
        atomic_write(root / "manifest.json", json.dumps(manifest, indent=2).encode())
        return gallery

    @classmethod
    def open(cls, root: str | Path, model_id: str | None = None) -> Gallery:
        """Open an existing gallery; refuse if ``model_id`` differs from the one that built it."""
        root = Path(root)
        mpath = root / "manifest.json"
        if not mpath.is_file():
            raise GalleryError(
                f"{root} is not a gallery (no manifest.json); create one with "
                f"'gunmatch gallery build SRC --gallery {root}'"
            )
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            raise GalleryError(f"{mpath}: unsupported gallery format {manifest.get('format')!r}")
        if model_id is not None and model_id != manifest["model_id"]:
            raise ModelMismatchError(
                f"gallery {root} was built with model {manifest['model_id']}, but the model in "
                f"use is {model_id}; re-index it with "
                f"'gunmatch gallery reindex --gallery {root} --model MODEL' "
                f"or search with the gallery's own model (omit --model)"
            )
        store = open_item_store(StoreSpec.from_manifest(manifest), root)
        gallery = cls(root, manifest, store)
        try:
            gallery.backend = backend_class(gallery.backend_spec.backend).open(
                gallery, gallery.backend_spec
            )
        except BaseException:
            store.close()
            raise
        gallery.sync()
        return gallery

    def close(self) -> None:
        """Persist the index and close the database (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self.backend.close()
            self.store.close()
            self._closed = True

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- properties -----------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The model that built this gallery."""
        return self.manifest["model_id"]

    @property
    def is_shared(self) -> bool:
        """Whether items or vectors live in a shared engine (PostgreSQL, Milvus)."""
        return "item_store" in self.manifest or "vector_store" in self.manifest

    @property
    def index_dim(self) -> int:
        """Dimension of the indexed vectors (after the optional transform)."""
        return self.transform.d_out if self.transform else self.dim

    @property
    def modality(self) -> str:
        """Default query modality."""
        return self.manifest.get("modality", "photo")

    @property
    def model_dir(self) -> Path:
        """Where the gallery keeps its model's checkpoint record."""
        return self.root / MODEL_DIR

    @property
    def threatmap_dir(self) -> Path:
        """Where an X-ray gallery keeps its threat map (``gunmatch gallery threatmap``)."""
        return self.model_dir / THREATMAP_DIR

    @property
    def calibration_file(self) -> Path:
        """The decision thresholds measured for this gallery's model."""
        return self.root / CALIBRATION_FILE

    def __len__(self) -> int:
        return self.store.count_items()

    # -- writes ---------------------------------------------------------------------------
    def add(self, items: Sequence[NewItem], model_id: str) -> AddResult:
        """Add references atomically: all of them or (on any error) none."""
        if model_id != self.model_id:
            raise ModelMismatchError(
                f"vectors from model {model_id} cannot join gallery {self.root} "
                f"built with {self.model_id}"
            )
        result = AddResult()
        with self._write_lock():
            known = self.store.known_shas()
            fresh: list[NewItem] = []
            for it in items:
                sha = it.sha256
                if sha in known:
                    existing = self.store.item_by_sha(sha)
                    result.skipped.append((it.source, existing.item_id if existing else sha[:16]))
                    continue
                known.add(sha)
                self._check_vectors(it)
                fresh.append(it)
            if not fresh:
                return result
            rows = [self._write_files(it) for it in fresh]
            with self.store.transaction() as conn:
                gen = self.store.bump_generation(conn)
                for it, row in zip(fresh, rows, strict=True):
                    self.store.insert_item(conn, row)
                    variants = ["original", *it.variants][: len(it.vectors)]
                    variants += [f"variant{i}" for i in range(len(variants), len(it.vectors))]
                    self.store.insert_vectors(conn, row.item_id, it.vectors, variants, gen)
                    result.added.append(row.item_id)
            self.sync()
        return result

    def _check_vectors(self, it: NewItem) -> None:
        v = np.asarray(it.vectors)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim or v.shape[0] < 1:
            raise ValueError(
                f"{it.source or it.label}: expected vectors of shape (n, {self.dim}), got {v.shape}"
            )
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{it.source or it.label}: vectors contain NaN or infinity")
        it.vectors = v.astype(np.float32)

    def _write_files(self, it: NewItem) -> Item:
        """Content-addressed files: an orphan left by a crash is harmless and reused later."""
        sha = it.sha256
        ext = it.image_ext if it.image_ext.startswith(".") else f".{it.image_ext}"
        image_file = f"images/{sha}{ext.lower()}"
        if not (self.root / image_file).exists():
            atomic_write(self.root / image_file, it.image_bytes)
        thumb_file = ""
        if it.thumb_bytes:
            thumb_file = f"thumbs/{sha}.jpg"
            if not (self.root / thumb_file).exists():
                atomic_write(self.root / thumb_file, it.thumb_bytes)
        return Item(
            item_id=sha[:16],
            label=it.label,
            category=normalize_category(it.category),
            modality=it.modality,
            threat=bool(it.threat),
            sha256=sha,
            added_at=_now(),
            make_model=it.make_model,
            calibre=it.calibre,
            source=it.source,
            notes=it.notes,
            added_by=it.added_by,
            image_file=image_file,
            thumb_file=thumb_file,
            width=it.width,
            height=it.height,
        )

    def restore(self, records: Sequence[tuple[Item, np.ndarray, list[str]]]) -> None:
        """Write items exactly as given (ids, dates, files already in place) with their
        vectors and variant names, atomically: a copied gallery's rows (``index.transfer``)."""
        for item, vectors, variants in records:
            v = np.asarray(vectors, dtype=np.float32)
            if v.ndim != 2 or v.shape[1] != self.dim or len(variants) != len(v):
                raise ValueError(f"{item.item_id}: vectors {v.shape} / variants do not fit")
        with self._write_lock():
            with self.store.transaction() as conn:
                gen = self.store.bump_generation(conn)
                for item, vectors, variants in records:
                    self.store.insert_item(conn, item)
                    vecs = np.asarray(vectors, dtype=np.float32)
                    self.store.insert_vectors(conn, item.item_id, vecs, list(variants), gen)
            self.sync()

    def adopt_transform(self, record: dict) -> None:
        """Use the transform file a copied gallery brought along (``transform.npz`` already in
        this directory, recorded by ``record``); the empty index is rebuilt in its space."""
        with self._write_lock():
            if self.store.count_items():
                raise GalleryError("a transform can only be adopted by an empty gallery")
            self.transform = load_transform(self.root, record)
            self.manifest["transform"] = record
            self._rebuild()
            self.manifest["index_generation"] = None
            self.flush()
            self._save_manifest()

    def remove(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items; returns the ids that existed and were removed."""
        removed = []
        with self._write_lock():
            missing = [i for i in item_ids if self.store.get_item(i) is None]
            if missing:
                raise ItemNotFoundError(f"no such item: {', '.join(missing)}")
            with self.store.transaction() as conn:
                gen = self.store.bump_generation(conn)
                for item_id in item_ids:
                    self.store.delete_item(conn, item_id, gen)
                    removed.append(item_id)
            self.sync()
        return removed

    def update(self, item_id: str, **changes) -> Item:
        """Edit metadata fields of one item."""
        changes = {k: v for k, v in changes.items() if v is not None}
        bad = set(changes) - set(EDITABLE_FIELDS)
        if bad:
            raise ValueError(f"fields cannot be edited: {', '.join(sorted(bad))}")
        if "category" in changes:
            changes["category"] = normalize_category(changes["category"])
        if "label" in changes and not str(changes["label"]).strip():
            raise ValueError("label cannot be empty")
        with self._write_lock():
            if self.store.get_item(item_id) is None:
                raise ItemNotFoundError(f"no such item: {item_id}")
            with self.store.transaction() as conn:
                self.store.update_item(conn, item_id, changes)
                if self.backend.indexes_metadata and changes:
                    gen = self.store.bump_generation(conn)
                    vec_ids = self.store.item_vec_ids(conn, item_id)
                    self.store.log_changes(conn, gen, "add", vec_ids)
            self.sync()
        item = self.store.get_item(item_id)
        if item is None:  # removed concurrently
            raise ItemNotFoundError(f"no such item: {item_id}")
        return item

    # -- reads ----------------------------------------------------------------------------
    def get(self, item_id: str) -> Item:
        """One item by id."""
        item = self.store.get_item(item_id)
        if item is None:
            raise ItemNotFoundError(f"no such item: {item_id}")
        return item

    def items(
        self, filters: Filters | None = None, limit: int | None = None, offset: int = 0
    ) -> list[Item]:
        """Items, optionally filtered and paged."""
        where, params = (filters or Filters()).sql()
        return self.store.list_items(where.replace("i.", ""), params, limit, offset)

    def labels(self) -> dict[str, int]:
        """Item count per label."""
        return self.store.label_counts()

    def search(
        self, queries: np.ndarray, k: int = 10, filters: Filters | None = None
    ) -> list[list[Match]]:
        """Top-k items per query vector, best variant per item, optionally filtered."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ModelMismatchError(
                f"query vectors have dimension {queries.shape[1]}, gallery expects {self.dim}"
            )
        if k < 1:
            raise ValueError("k must be at least 1")
        with self._lock:
            self.sync()
            allowed = None
            if not self.backend.pushes_filters:
                where, params = (filters or Filters()).sql()
                if where:
                    allowed = self.store.vec_ids_where(where, params)
            # Variants of one item compete for slots, so ask for more and dedupe.
            variants_per_item = max(1, self.index.ntotal // max(1, self._item_count()))
            scores, ids = self.backend.search(
                self._to_index_space(queries), k * variants_per_item, filters, allowed
            )
        lookup = self.store.items_for_vectors({int(i) for i in ids.ravel() if i >= 0})
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = (
                Match(rank=0, item=lookup[int(vid)], score=float(s))
                for s, vid in zip(row_scores, row_ids, strict=True)
                if vid >= 0 and int(vid) in lookup
            )
            results.append(best_per_item(hits, k))
        return results

    def _item_count(self) -> int:
        """Items at the index's generation (adds and removes bump it), counted once per change."""
        if self._count is None or self._count[0] != self._index_gen:
            self._count = (self._index_gen, self.store.count_items())
        return self._count[1]

    def configure_index(
        self,
        config: IndexConfig | None = None,
        pca_dim: int | None = None,
        whiten: bool = False,
    ) -> dict:
        """Change the index kind/parameters and (re)learn or drop the PCA transform; rebuilds.

        ``pca_dim=None`` keeps the current transform, ``0`` removes it, a positive value
        learns a new one on the gallery's stored vectors. Returns ``info()``.
        """
        with self._write_lock():
            if config is not None:
                self.index_config = config
                self.manifest["index"] = config.to_dict()
            if pca_dim == 0:
                self.transform = None
                self.manifest.pop("transform", None)
            elif pca_dim is not None:
                _, vecs = self._all_vectors()
                self.transform = fit_pca(vecs, pca_dim, whiten=whiten)
                record = save_transform(self.transform, self.root / "transform.npz")
                self.manifest["transform"] = record
            self._rebuild()
            self.manifest["index_generation"] = None
            self.flush()
            if self.backend_spec.backend != DEFAULT_BACKEND:  # FAISS's flush wrote it
                self._save_manifest()
        return self.info()

    def _save_manifest(self) -> None:
        atomic_write(self.root / "manifest.json", json.dumps(self.manifest, indent=2).encode())

    def item_vectors(self, item_id: str) -> np.ndarray:
        """Stored vectors of one item (original first)."""
        self.get(item_id)
        return self.store.item_vectors(item_id)

    def info(self) -> dict:
        """Summary for `gallery info` and the service."""
        return {
            "path": str(self.root),
            "model_id": self.model_id,
            "dim": self.dim,
            "modality": self.modality,
            "items": len(self),
            "vectors": self.index.ntotal,
            "index_type": self.index.kind,
            "index": self.index_config.to_dict(),
            "transform": self.manifest.get("transform"),
            "labels": self.labels(),
            "generation": self.store.generation(),
            "created_at": self.manifest.get("created_at"),
        } | {k: self.manifest[k] for k in ("vector_store", "item_store") if k in self.manifest}
