"""A FAISS vector index keyed by int64 ids, with persistence, tombstones and tuned search.

Inner product on unit vectors is cosine similarity. The wrapped FAISS index is an
``IndexIDMap2`` around a flat or HNSW index, or an IVF index, which keeps ids itself (see
``index.factory``). Index types that cannot delete (HNSW) keep deleted ids as tombstones,
excluded at search time by an ID selector, until ``compact`` rebuilds them away.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from index.files import atomic_replace, atomic_write

SIDECAR_SUFFIX = ".meta.json"


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The index inside an IDMap wrapper (downcast to its concrete type)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


def index_kind(index: faiss.Index) -> str:
    """The factory kind of a FAISS index: flat, hnsw, ivf or ivfpq."""
    inner = _unwrap(index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(inner, faiss.IndexIVF):
        return "ivfpq"
    return "flat"


def can_remove(index: faiss.Index) -> bool:
    """Whether the index supports ``remove_ids`` natively (else: tombstones)."""
    return not isinstance(_unwrap(index), faiss.IndexHNSW)


class VectorIndex:
    """Inner-product search over id-mapped vectors (exact flat unless given another index)."""

    def __init__(
        self,
        dim: int,
        index: faiss.Index | None = None,
        search_params: dict | None = None,
        compact_ratio: float = 0.2,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dimension must be positive, got {dim}")
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.search_params = dict(search_params or {})
        self.compact_ratio = compact_ratio
        self.tombstones: set[int] = set()

    @property
    def kind(self) -> str:
        """flat, hnsw, ivf or ivfpq."""
        return index_kind(self.index)

    @property
    def ntotal(self) -> int:
        """Number of live (not deleted) vectors."""
        return int(self.index.ntotal) - len(self.tombstones)

    @property
    def is_trained(self) -> bool:
        """False for an IVF index that still needs ``train``."""
        return bool(self.index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        """Train the coarse quantizer / codebooks (IVF kinds); no-op when already trained."""
        if not self.is_trained:
            self.index.train(self._check(vectors))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given int64 ids."""
        vectors = self._check(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape[0] != vectors.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        if not ids.size:
            return
        if not self.is_trained:
            raise RuntimeError(f"the {self.kind} index must be trained before vectors are added")
        revived = self.tombstones.intersection(ids.tolist())
        if revived:  # an id re-added after deletion: drop the old copy first
            self.compact()
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove vectors by id; returns how many were removed."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.size == 0:
            return 0
        if can_remove(self.index):
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        present = set(self._stored_ids().tolist()) - self.tombstones
        dead = present.intersection(ids.tolist())
        self.tombstones |= dead
        if self.tombstones and len(self.tombstones) > self.compact_ratio * self.index.ntotal:
            self.compact()
        return len(dead)

    def compact(self) -> int:
        """Rebuild without tombstoned vectors; returns how many were dropped."""
        if not self.tombstones:
            return 0
        ids = self._stored_ids()
        live = ~np.isin(ids, np.fromiter(self.tombstones, np.int64))
        vecs = self.index.index.reconstruct_n(0, int(self.index.ntotal))[live]
        fresh = faiss.IndexIDMap2(_empty_like(_unwrap(self.index)))
        fresh.add_with_ids(np.ascontiguousarray(vecs), ids[live])
        dropped = len(self.tombstones)
        self.index, self.tombstones = fresh, set()
        return dropped

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are -1 where fewer than k exist."""
        queries = self._check(queries)
        k = max(1, min(k, max(self.ntotal, 1)))
        sel = None
        if allowed_ids is not None:
            allowed = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            if self.tombstones:
                allowed = np.setdiff1d(allowed, np.fromiter(self.tombstones, np.int64))
            if allowed.size == 0:
                n = queries.shape[0]
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            sel = faiss.IDSelectorBatch(allowed)
        elif self.tombstones:
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, np.int64))
            sel = faiss.IDSelectorNot(dead)
            sel.referenced = dead  # keep the inner selector alive as long as sel
        params = self._params(sel)
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def _params(self, sel: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        """Per-call search parameters for this kind (efSearch / nprobe) plus a selector."""
        kind = self.kind
        if kind == "hnsw":
            p = faiss.SearchParametersHNSW()
            p.efSearch = int(self.search_params.get("ef_search", _unwrap(self.index).hnsw.efSearch))
        elif kind in ("ivf", "ivfpq"):
            p = faiss.SearchParametersIVF()
            p.nprobe = int(self.search_params.get("nprobe", _unwrap(self.index).nprobe))
        elif sel is None:
            return None
        else:
            p = faiss.SearchParameters()
        if sel is not None:
            p.sel = sel
        return p

    def _stored_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file, fsync, rename), with a sidecar for tombstones/params."""
        path = Path(path)
        sidecar = {
            "kind": self.kind,
            "raw_ntotal": int(self.index.ntotal),
            "search_params": self.search_params,
            "compact_ratio": self.compact_ratio,
            "tombstones": sorted(self.tombstones),
        }
        atomic_write(Path(str(path) + SIDECAR_SUFFIX), json.dumps(sidecar).encode())
        atomic_replace(path, lambda t: faiss.write_index(self.index, t))

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> VectorIndex:
        """Read an index written by save (memory-mapped and read-only when ``mmap``)."""
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        if not isinstance(faiss.downcast_index(index), faiss.IndexIDMap2 | faiss.IndexIVF):
            raise RuntimeError(f"{path}: not an id-mapped gunmatch index")
        out = cls(index.d, index)
        meta_path = Path(str(path) + SIDECAR_SUFFIX)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if int(meta.get("raw_ntotal", index.ntotal)) != index.ntotal:
                raise RuntimeError(f"{meta_path} does not match {path} (interrupted write)")
            out.search_params = dict(meta.get("search_params", {}))
            out.compact_ratio = float(meta.get("compact_ratio", out.compact_ratio))
            out.tombstones = {int(i) for i in meta.get("tombstones", [])}
        return out

    def memory_bytes(self) -> int:
        """Size of the serialised index (a close proxy for its resident memory)."""
        return int(faiss.serialize_index(self.index).size)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors


def _empty_like(inner: faiss.Index) -> faiss.Index:
    """A new, empty index with the same structure and parameters (flat or HNSW)."""
    if isinstance(inner, faiss.IndexHNSWFlat):
        fresh = faiss.IndexHNSWFlat(inner.d, inner.hnsw.nb_neighbors(1), inner.metric_type)
        fresh.hnsw.efConstruction = inner.hnsw.efConstruction
        fresh.hnsw.efSearch = inner.hnsw.efSearch
        return fresh
    if isinstance(inner, faiss.IndexFlat):
        return faiss.IndexFlat(inner.d, inner.metric_type)
    raise RuntimeError(f"cannot compact a {type(inner).__name__}")
