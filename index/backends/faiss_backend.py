"""The embedded backend: a FAISS index in this process, cached in ``DIR/index.faiss``.

The in-memory index remembers the generation it reflects; ``sync`` replays the item store's
change log since then (or rebuilds when the log was pruned past it), so another writer's
adds, or a crash between the database commit and the index write, are picked up by the next
reader. ``flush`` writes the index file and manifest for the current generation and prunes
the log.
"""

from __future__ import annotations

import json
import time

import numpy as np

from index.backends.base import BackendHost, BackendSpec, VectorBackend, register_backend
from index.factory import build_index, resolve_kind
from index.files import atomic_write
from index.types import Filters
from index.vectors import VectorIndex

INDEX_FILE = "index.faiss"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def all_vectors(host: BackendHost) -> tuple[np.ndarray, np.ndarray]:
    """Every stored (vec_id, vector), in vec_id order, in model space."""
    chunks = list(host.store.vectors())
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, host.dim), np.float32)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


@register_backend("faiss")
class FaissBackend(VectorBackend):
    """Today's embedded index: ``VectorIndex`` + file cache + change-log replay."""

    def __init__(self, host: BackendHost, spec: BackendSpec, index: VectorIndex, gen: int) -> None:
        super().__init__(host, spec)
        self.index = index
        self._gen = gen

    @classmethod
    def create(cls, host: BackendHost, spec: BackendSpec) -> FaissBackend:
        dim = host.index_dim
        index = build_index(
            np.zeros(0, np.int64), np.zeros((0, dim), np.float32), host.index_config
        )
        index.save(host.root / INDEX_FILE)
        return cls(host, spec, index, 0)

    @classmethod
    def open(cls, host: BackendHost, spec: BackendSpec) -> FaissBackend:
        try:
            index = VectorIndex.load(host.root / INDEX_FILE)
            gen = int(host.manifest.get("index_generation", 0))
        except (RuntimeError, OSError):
            index, gen = VectorIndex(int(host.manifest["dim"])), -1
        if index.dim != host.index_dim:  # index file from before a transform change
            gen = -1
        return cls(host, spec, index, gen)

    @property
    def kind(self) -> str:
        return self.index.kind

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.dim

    @property
    def generation(self) -> int:
        return self._gen

    def sync(self) -> None:
        store = self.host.store
        db_gen = store.generation()
        if db_gen == self._gen:
            return
        pruned = int(store.get_meta("pruned_upto", "0") or 0)
        if self._gen < pruned or self._gen > db_gen:
            self.rebuild()
        else:
            self._replay(store.changes_since(self._gen))
        self._gen = db_gen

    def rebuild(self) -> None:
        ids, vecs = all_vectors(self.host)
        self.index = build_index(ids, self.host._to_index_space(vecs), self.host.index_config)
        self.host.manifest["index_type"] = self.index.kind

    def _replay(self, changes: list[tuple[int, str, int]]) -> None:
        adds: list[int] = []
        for _, op, vec_id in changes:
            if op == "add":
                adds.append(vec_id)
            else:
                if vec_id in adds:
                    adds.remove(vec_id)
                self.index.remove(np.array([vec_id]))
        for ids, vecs in self.host.store.vectors(adds):
            self.index.add(ids, self.host._to_index_space(vecs))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: Filters | None = None,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k, allowed_ids)

    def flush(self) -> None:
        host, store = self.host, self.host.store
        self.sync()
        if resolve_kind(host.index_config, self.index.ntotal) != self.index.kind:
            self.rebuild()  # auto: the gallery crossed the exact-search threshold
            host.manifest["index_generation"] = None
        if host.manifest.get("index_generation") == self._gen and (host.root / INDEX_FILE).exists():
            return
        self.index.save(host.root / INDEX_FILE)
        self._write_manifest()
        store.prune_changes(self._gen)
        with store.transaction() as conn:
            store.set_meta(conn, "pruned_upto", str(self._gen))

    def close(self) -> None:
        """Nothing to release: the index lives in this process."""

    def drop(self) -> None:
        """Delete the index file (the gallery directory goes with it)."""
        for path in (self.host.root / INDEX_FILE, self.host.root / (INDEX_FILE + ".meta.json")):
            path.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        host = self.host
        host.manifest["index_generation"] = self._gen
        host.manifest["count"] = host.store.count_items()
        host.manifest["vectors"] = self.index.ntotal
        host.manifest["updated_at"] = _now()
        atomic_write(host.root / "manifest.json", json.dumps(host.manifest, indent=2).encode())
