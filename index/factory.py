"""Index factory: exact flat search for small galleries, HNSW or IVF-PQ beyond a threshold.

``create_index(dim, config, n)`` picks the kind (``auto`` resolves by gallery size, any other
kind is an explicit override), builds the FAISS index with tuned parameters and returns a
``VectorIndex``. Adding a kind is one ``@register_index`` function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import faiss
import numpy as np

from index.vectors import VectorIndex

METRIC = faiss.METRIC_INNER_PRODUCT


@dataclass(frozen=True)
class IndexConfig:
    """How a gallery's vectors are indexed; recorded in the manifest."""

    kind: str = "auto"  # auto | flat | hnsw | ivf | ivfpq
    flat_max: int = 100_000  # auto: exact search up to this many vectors
    auto_kind: str = "hnsw"  # auto: the approximate kind above flat_max
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 96
    nlist: int = 0  # IVF lists; 0 = about 4 * sqrt(n), within [16, 65536]
    nprobe: int = 32
    pq_m: int = 0  # PQ sub-quantizers (bytes per vector); 0 = dim // 4
    compact_ratio: float = 0.2  # tombstoned share that triggers a rebuild

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> IndexConfig:
        """Inverse of to_dict; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})


Builder = Callable[[int, int, IndexConfig], faiss.Index]
_REGISTRY: dict[str, Builder] = {}


def register_index(name: str) -> Callable[[Builder], Builder]:
    """Register a builder ``(dim, n, config) -> faiss.Index`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"index kind {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_index_kinds() -> list[str]:
    """Registered kinds (plus ``auto``)."""
    return ["auto", *sorted(_REGISTRY)]


def resolve_kind(config: IndexConfig, n: int) -> str:
    """The concrete kind for a gallery of ``n`` vectors."""
    kind = config.kind
    if kind == "auto":
        kind = "flat" if n <= config.flat_max else config.auto_kind
    if kind not in _REGISTRY:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(list_index_kinds())}")
    return kind


def default_nlist(n: int) -> int:
    """About 4 * sqrt(n) inverted lists, clamped to [16, 65536] and to n / 39 (k-means needs
    about 39 training points per centroid)."""
    return int(min(65536, max(16, 4 * round(math.sqrt(max(n, 1)))), max(1, n // 39)))


@register_index("flat")
def _flat(dim: int, n: int, config: IndexConfig) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


@register_index("hnsw")
def _hnsw(dim: int, n: int, config: IndexConfig) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(dim, config.hnsw_m, METRIC)
    inner.hnsw.efConstruction = config.ef_construction
    inner.hnsw.efSearch = config.ef_search
    return faiss.IndexIDMap2(inner)


def _coarse(dim: int, nlist: int) -> faiss.Index:
    # Above a few thousand lists an HNSW coarse quantizer keeps assignment cheap.
    return faiss.IndexHNSWFlat(dim, 32, METRIC) if nlist >= 4096 else faiss.IndexFlatIP(dim)


def _own(index: faiss.IndexIVF, quantizer: faiss.Index) -> faiss.IndexIVF:
    """Hand the quantizer to the C++ index (so Python does not free it twice)."""
    index.own_fields = True
    quantizer.this.disown()
    return index


@register_index("ivf")
def _ivf(dim: int, n: int, config: IndexConfig) -> faiss.Index:
    nlist = config.nlist or default_nlist(n)
    quantizer = _coarse(dim, nlist)
    index = _own(faiss.IndexIVFFlat(quantizer, dim, nlist, METRIC), quantizer)
    index.nprobe = config.nprobe
    return index


@register_index("ivfpq")
def _ivfpq(dim: int, n: int, config: IndexConfig) -> faiss.Index:
    nlist = config.nlist or default_nlist(n)
    m = config.pq_m or max(1, dim // 4)
    if dim % m:
        raise ValueError(f"pq_m={m} must divide the dimension {dim}")
    quantizer = _coarse(dim, nlist)
    index = _own(faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, METRIC), quantizer)
    index.nprobe = config.nprobe
    return index


def create_index(
    dim: int,
    config: IndexConfig | None = None,
    n: int = 0,
    train_vectors: np.ndarray | None = None,
) -> VectorIndex:
    """A ``VectorIndex`` of the kind ``config`` resolves to for ``n`` vectors, trained if needed."""
    config = config or IndexConfig()
    kind = resolve_kind(config, n)
    raw = _REGISTRY[kind](dim, n, config)
    params = {"ef_search": config.ef_search} if kind == "hnsw" else {}
    if kind in ("ivf", "ivfpq"):
        params = {"nprobe": config.nprobe}
    index = VectorIndex(dim, raw, params, config.compact_ratio)
    if not index.is_trained and train_vectors is not None:
        index.train(train_vectors)
    return index


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    config: IndexConfig | None = None,
    max_train: int = 100_000,
    seed: int = 0,
) -> VectorIndex:
    """Create, train (on at most ``max_train`` sampled vectors) and fill an index."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    config = config or IndexConfig()
    sample = vectors
    if n > max_train:
        pick = np.random.default_rng(seed).choice(n, max_train, replace=False)
        sample = vectors[np.sort(pick)]
    index = create_index(dim, config, n, sample if n else None)
    if n:
        if not index.is_trained:
            raise ValueError(f"the {index.kind} index needs training vectors; got none")
        index.add(ids, vectors)
    return index


def load_index(path: str | Path, mmap: bool = False) -> VectorIndex:
    """Read an index written by ``VectorIndex.save`` (memory-mapped read-only when ``mmap``)."""
    return VectorIndex.load(path, mmap=mmap)


def with_kind(config: IndexConfig, kind: str) -> IndexConfig:
    """A copy of ``config`` with an explicit kind (validated)."""
    if kind != "auto" and kind not in _REGISTRY:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(list_index_kinds())}")
    return replace(config, kind=kind)
