"""Keeping a gallery's vector index consistent with its item store (the source of truth).

The item store holds every vector and a change log with a generation number. The vector
backend (``index.backends``) remembers the generation it reflects; ``sync`` brings it up to
the store's, so another writer's adds, or a crash between the database commit and the index
update, are picked up by the next reader. Writes hold the store's write lock (a file lock for
SQLite, an advisory lock for PostgreSQL), exclusive across threads, processes and machines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index.backends import VectorBackend
from index.backends.faiss_backend import all_vectors
from index.factory import IndexConfig
from index.transform import PcaTransform
from index.types import ModelMismatchError

# The item store's record of the model whose vectors it holds, written by a promotion's
# switch on a shared gallery (``index.shadow``); absent until the first one.
LIVE_MODEL = "model_id"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class IndexSync:
    """The consistency half of ``Gallery``: write lock, sync, rebuild, flush."""

    root: Path
    manifest: dict
    store: object  # index.itemstore.ItemStore
    backend: VectorBackend
    index_config: IndexConfig
    transform: PcaTransform | None
    _lock: threading.RLock
    _writing: bool

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.manifest["dim"])

    @property
    def index(self) -> VectorBackend:
        """The vector index (``.kind``, ``.ntotal``, ``.dim``)."""
        return self.backend

    @property
    def _index_gen(self) -> int:
        return self.backend.generation

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive across threads, processes and (with PostgreSQL) machines."""
        with self._lock, self.store.write_lock():
            live = self.store.get_meta(LIVE_MODEL)
            if live and live != self.manifest["model_id"]:
                # A promotion switched the shared gallery: this process still holds the old
                # model and would write its vectors into the new model's set.
                raise ModelMismatchError(
                    f"gallery {self.root} now uses model {live}, not "
                    f"{self.manifest['model_id']}: reload before writing"
                )
            self._writing = True
            try:
                self.sync()
                yield
            finally:
                self._writing = False

    def sync(self) -> None:
        """Bring the vector index up to the store's generation (other writers, crashes)."""
        with self._lock:
            self.backend.sync()

    def _to_index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored/query vectors -> the space the index holds (the optional transform)."""
        return self.transform.apply(vectors) if self.transform else vectors

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return all_vectors(self)

    def _rebuild(self) -> None:
        self.backend.rebuild()

    def flush(self) -> None:
        """Persist the index for the current generation; prune the change log."""
        with self._lock:
            self.backend.flush()
