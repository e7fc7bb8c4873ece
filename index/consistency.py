"""Keeping a gallery's FAISS index consistent with its SQLite source of truth.

SQLite holds every vector and a change log with a generation number. The in-memory index
remembers the generation it reflects; ``sync`` replays the log since then (or rebuilds when
the log was pruned past it), so another writer's adds, or a crash between the SQLite commit
and the index write, are picked up by the next reader. ``flush`` writes the index file and
manifest for the current generation and prunes the log.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index.factory import IndexConfig, build_index, resolve_kind
from index.files import atomic_write
from index.store import Store
from index.transform import PcaTransform
from index.vectors import VectorIndex


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class IndexSync:
    """The consistency half of ``Gallery``: write lock, sync, replay, rebuild, flush."""

    root: Path
    manifest: dict
    store: Store
    index: VectorIndex
    index_config: IndexConfig
    transform: PcaTransform | None
    _index_gen: int
    _lock: threading.RLock

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.manifest["dim"])

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive across threads and processes."""
        with self._lock, open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self.sync()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sync(self) -> None:
        """Bring the in-memory index up to the database's generation (other writers, crashes)."""
        with self._lock:
            db_gen = self.store.generation()
            if db_gen == self._index_gen:
                return
            pruned = int(self.store.get_meta("pruned_upto", "0") or 0)
            if self._index_gen < pruned or self._index_gen > db_gen:
                self._rebuild()
            else:
                self._replay(self.store.changes_since(self._index_gen))
            self._index_gen = db_gen

    def _to_index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored/query vectors -> the space the index holds (the optional transform)."""
        return self.transform.apply(vectors) if self.transform else vectors

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        chunks = list(self.store.vectors())
        if not chunks:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])

    def _rebuild(self) -> None:
        ids, vecs = self._all_vectors()
        self.index = build_index(ids, self._to_index_space(vecs), self.index_config)
        self.manifest["index_type"] = self.index.kind

    def _replay(self, changes: list[tuple[int, str, int]]) -> None:
        adds: list[int] = []
        for _, op, vec_id in changes:
            if op == "add":
                adds.append(vec_id)
            else:
                if vec_id in adds:
                    adds.remove(vec_id)
                self.index.remove(np.array([vec_id]))
        for ids, vecs in self.store.vectors(adds):
            self.index.add(ids, self._to_index_space(vecs))

    def flush(self) -> None:
        """Write the index file and manifest for the current generation; prune the change log."""
        with self._lock:
            self.sync()
            if resolve_kind(self.index_config, self.index.ntotal) != self.index.kind:
                self._rebuild()  # auto: the gallery crossed the exact-search threshold
                self.manifest["index_generation"] = None
            if (
                self.manifest.get("index_generation") == self._index_gen
                and (self.root / "index.faiss").exists()
            ):
                return
            self.index.save(self.root / "index.faiss")
            self._write_manifest()
            self.store.prune_changes(self._index_gen)
            with self.store.transaction() as conn:
                self.store.set_meta(conn, "pruned_upto", str(self._index_gen))

    def _write_manifest(self) -> None:
        self.manifest["index_generation"] = self._index_gen
        self.manifest["count"] = self.store.count_items()
        self.manifest["vectors"] = self.index.ntotal
        self.manifest["updated_at"] = _now()
        atomic_write(self.root / "manifest.json", json.dumps(self.manifest, indent=2).encode())
