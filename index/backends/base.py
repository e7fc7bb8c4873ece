"""The vector store interface and its registry: where a gallery's vectors are indexed.

A backend keeps an index of the item store's vectors (the store is the source of truth and
logs every change with a generation number) and answers top-k inner-product queries. The
embedded ``faiss`` backend holds the index in this process and caches it in a file; the
``milvus`` backend keeps it in a Milvus server shared by every process that opens the gallery.
Adding a backend is one ``@register_backend`` class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from index.factory import IndexConfig
from index.types import Filters

DEFAULT_BACKEND = "faiss"


class BackendHost(Protocol):
    """What a backend reads from the gallery that owns it."""

    root: Path
    manifest: dict
    store: object  # index.itemstore.ItemStore (SQLite or PostgreSQL)
    index_config: IndexConfig

    @property
    def dim(self) -> int: ...

    @property
    def index_dim(self) -> int: ...

    def _to_index_space(self, vectors: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BackendSpec:
    """Which vector store a gallery uses and where (``manifest["vector_store"]``)."""

    backend: str = DEFAULT_BACKEND
    uri: str = ""
    collection: str = ""

    def to_dict(self) -> dict:
        """The manifest record (an embedded FAISS gallery records nothing)."""
        return {"backend": self.backend, "uri": self.uri, "collection": self.collection}

    @classmethod
    def from_manifest(cls, manifest: dict) -> BackendSpec:
        """The spec a manifest records; none means today's embedded FAISS."""
        rec = manifest.get("vector_store") or {}
        return cls(
            rec.get("backend", DEFAULT_BACKEND), rec.get("uri", ""), rec.get("collection", "")
        )


class VectorBackend(ABC):
    """An index of the item store's vectors, kept at the store's generation by ``sync``."""

    name: ClassVar[str]
    # True: ``search`` takes the Filters and applies them itself; False: the gallery passes
    # the allowed vector ids, selected from the item store.
    pushes_filters: ClassVar[bool] = False
    # True: metadata edits are logged as changes, because the backend holds filter fields.
    indexes_metadata: ClassVar[bool] = False

    def __init__(self, host: BackendHost, spec: BackendSpec) -> None:
        self.host = host
        self.spec = spec

    @classmethod
    @abstractmethod
    def create(cls, host: BackendHost, spec: BackendSpec) -> VectorBackend:
        """A new, empty index for a new gallery."""

    @classmethod
    @abstractmethod
    def open(cls, host: BackendHost, spec: BackendSpec) -> VectorBackend:
        """The index of an existing gallery (not yet synced)."""

    @property
    @abstractmethod
    def kind(self) -> str:
        """The resolved index kind: flat, hnsw, ivf or ivfpq."""

    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Live vectors in the index."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Dimension of the indexed vectors."""

    @property
    @abstractmethod
    def generation(self) -> int:
        """The item store generation the index reflects (-1: unknown)."""

    @abstractmethod
    def sync(self) -> None:
        """Bring the index up to the item store's generation (other writers, crashes)."""

    @abstractmethod
    def rebuild(self) -> None:
        """Re-index every stored vector (new kind, parameters or transform)."""

    @abstractmethod
    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: Filters | None = None,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, vec_ids) per query in index space; ids are -1 past the last hit."""

    @abstractmethod
    def flush(self) -> None:
        """Persist what the index needs to reopen quickly; prune the change log."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (the gallery closes the item store)."""

    @abstractmethod
    def drop(self) -> None:
        """Delete the index's shared storage, if it has any (the gallery is being removed)."""


_REGISTRY: dict[str, type[VectorBackend]] = {}


def register_backend(name: str) -> Callable[[type[VectorBackend]], type[VectorBackend]]:
    """Register a ``VectorBackend`` subclass under ``name``."""

    def deco(cls: type[VectorBackend]) -> type[VectorBackend]:
        if name in _REGISTRY:
            raise ValueError(f"vector backend {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_backends() -> list[str]:
    """Registered backend names."""
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[VectorBackend]:
    """The class registered under ``name``; a clear error lists the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown vector backend {name!r}; known: {', '.join(list_backends())}")
    return _REGISTRY[name]
