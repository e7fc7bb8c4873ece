"""The shared backend: a Milvus collection that every process opening the gallery searches.

The item store stays the source of truth (vectors and metadata, with the change log). Each
Milvus row is one stored vector keyed by its ``vec_id``, with the item fields searches filter
on (category, modality, threat, label) so filters run inside Milvus. The generation the
collection reflects is shared too: the item store's ``vector_generation`` meta value, moved
forward only by the process holding the gallery's write lock. A writer commits to the store,
applies the change log to Milvus (upserts and deletes by ``vec_id``, so replaying twice is
harmless) and records the generation before it returns; a reader that finds the collection
behind and the write lock free (the writer died in between) replays the log itself.

A promotion's switch (``index.shadow``) records another collection as the live one: a process
still holding this one (a replica that has not reloaded yet) is ``retired``, keeps answering
searches from it and never replays into it; while a shadow is built the change log is pruned
no further than the generation the build began at (``changes_hold``).
"""

from __future__ import annotations

import numpy as np

from index.backends.base import BackendHost, BackendSpec, VectorBackend, register_backend
from index.backends.milvus_params import (
    KIND_OF_MILVUS,
    MAX_TOPK,
    METRIC,
    check_collection_name,
    filter_expr,
    index_params,
    search_params,
)
from index.factory import resolve_kind
from index.types import Filters, GalleryError

VECTOR_GENERATION = "vector_generation"
# Set by a promotion's switch (index.shadow): the collection every replica should search, and
# while a shadow is built, the generation from which the change log must be kept.
LIVE_COLLECTION = "vector_collection"
CHANGES_HOLD = "changes_hold"
# Keepalive pings only while calls are in flight and at most every 5 minutes: gRPC servers
# left at their defaults (milvus-lite's) answer a client pinging an idle channel every 10 s
# (pymilvus's default) with GOAWAY "too_many_pings", failing the next call on that channel.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0}
BATCH = 1000
# Rows written by this process since Milvus last sealed its growing segment: past this many a
# bulk write is flushed, so searches hit indexed segments instead of scanning a large growing
# one (milvus-lite searches a 10k-row unflushed segment ~30x slower than a flushed one).
FLUSH_ROWS = 1000


def connect(uri: str):
    """A ``MilvusClient`` for ``uri`` (pymilvus is imported only when Milvus is used)."""
    try:
        from pymilvus import MilvusClient
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise GalleryError(
            "the milvus vector backend needs pymilvus: pip install 'gunmatch[distributed]'"
        ) from e
    return MilvusClient(uri=uri, grpc_options=GRPC_OPTIONS)


def _schema(client, dim: int):
    from pymilvus import DataType

    s = client.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("vec_id", DataType.INT64, is_primary=True)
    s.add_field("item_id", DataType.VARCHAR, max_length=64)
    s.add_field("label", DataType.VARCHAR, max_length=1024)
    s.add_field("category", DataType.VARCHAR, max_length=64)
    s.add_field("modality", DataType.VARCHAR, max_length=32)
    s.add_field("threat", DataType.BOOL)
    s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return s


def create_collection(client, name: str, dim: int, config, n: int) -> str:
    """Create and load collection ``name`` indexed for ``n`` vectors; returns the kind."""
    kind, mtype, params = index_params(config, n, dim)
    ip = client.prepare_index_params()
    ip.add_index(field_name="vector", index_type=mtype, metric_type=METRIC, params=params)
    client.create_collection(name, schema=_schema(client, dim), index_params=ip)
    client.load_collection(name)
    return kind


def milvus_rows(store, ids: np.ndarray, space: np.ndarray) -> list[dict]:
    """Milvus rows for vec_ids with their vectors (in index space) and their items' fields."""
    items = store.items_for_vectors(ids.tolist())
    rows = []
    for vid, vec in zip(ids.tolist(), space, strict=True):
        it = items.get(int(vid))
        if it is None:  # removed between the two reads; the log deletes it later
            continue
        rows.append(
            {
                "vec_id": int(vid),
                "item_id": it.item_id,
                "label": it.label,
                "category": it.category,
                "modality": it.modality,
                "threat": bool(it.threat),
                "vector": np.asarray(vec, dtype=np.float32).tolist(),
            }
        )
    return rows


@register_backend("milvus")
class MilvusBackend(VectorBackend):
    """Vectors and filter fields in one Milvus collection, kept at the store's generation."""

    pushes_filters = True
    indexes_metadata = True

    def __init__(self, host: BackendHost, spec: BackendSpec, client, kind: str) -> None:
        super().__init__(host, spec)
        self.client = client
        self.collection = check_collection_name(spec.collection)
        self._kind = kind
        self._gen = -1
        self._count: tuple[int, int] | None = None  # (generation, row count)
        self._unsealed = 0  # rows written here since the last Milvus flush

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, host: BackendHost, spec: BackendSpec) -> MilvusBackend:
        client = connect(spec.uri)
        name = check_collection_name(spec.collection)
        if client.has_collection(name):
            raise GalleryError(
                f"Milvus collection {name!r} at {spec.uri} already exists; choose another name"
            )
        backend = cls(host, spec, client, "flat")
        backend._create_collection(0)
        backend._gen = 0
        return backend

    @classmethod
    def open(cls, host: BackendHost, spec: BackendSpec) -> MilvusBackend:
        client = connect(spec.uri)
        if not client.has_collection(check_collection_name(spec.collection)):
            raise GalleryError(
                f"Milvus collection {spec.collection!r} is missing at {spec.uri}; rebuild it "
                f"with 'gunmatch gallery index --gallery {host.root}'"
            )
        info = client.describe_index(spec.collection, "vector")
        kind = KIND_OF_MILVUS.get(str(info.get("index_type", "FLAT")).upper(), "flat")
        client.load_collection(spec.collection)
        return cls(host, spec, client, kind)

    def _create_collection(self, n: int) -> None:
        dim, config = self.host.index_dim, self.host.index_config
        self._kind = create_collection(self.client, self.collection, dim, config, n)
        self._count = None

    def close(self) -> None:
        self.client.close()

    def drop(self) -> None:
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)

    # -- properties -----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self._kind

    @property
    def ntotal(self) -> int:
        gen = self._gen
        if self._count is None or self._count[0] != gen or gen < 0:
            # count(*) is exact; collection statistics may still count deleted rows.
            rows = self.client.query(
                self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
            )
            self._count = (gen, int(rows[0]["count(*)"]))
        return self._count[1]

    @property
    def dim(self) -> int:
        return self.host.index_dim

    @property
    def generation(self) -> int:
        return self._gen

    # -- consistency ----------------------------------------------------------------------
    def _shared_generation(self) -> int:
        return int(self.host.store.get_meta(VECTOR_GENERATION, "0") or 0)

    @property
    def retired(self) -> bool:
        """A promotion or rollback switched the gallery to another collection: this one is
        kept, frozen, for replicas that have not reloaded yet (and never written again)."""
        live = self.host.store.get_meta(LIVE_COLLECTION)
        return bool(live) and live != self.collection

    def sync(self) -> None:
        store = self.host.store
        db_gen = store.generation()
        if self._shared_generation() == db_gen:
            self._gen = db_gen
            return
        if self.retired:
            return
        if getattr(self.host, "_writing", False):
            self._catch_up()
            return
        # Behind and someone else holds the lock: that writer applies its own change.
        with store.write_lock(blocking=False) as held:
            if held:
                self._catch_up()

    def _catch_up(self) -> None:
        """Apply the change log since the shared generation (caller holds the write lock)."""
        store = self.host.store
        db_gen = store.generation()
        shared = self._shared_generation()
        if shared == db_gen:
            self._gen = db_gen
            return
        # Ahead of the store: the database was restored from an older backup; or the log that
        # would bring Milvus forward is gone. Either way only a full re-index is right.
        if shared > db_gen or shared < int(store.get_meta("pruned_upto", "0") or 0):
            self.rebuild()
            return
        touched = list(dict.fromkeys(v for _, _, v in store.changes_since(shared)))
        self._apply(touched)
        self._unsealed += len(touched)
        if self._unsealed >= FLUSH_ROWS:
            self._seal()
        self._record(db_gen)

    def _seal(self) -> None:
        """Flush Milvus's growing segment into a sealed, indexed one."""
        self.client.flush(self.collection)
        self._unsealed = 0

    def _apply(self, vec_ids: list[int]) -> None:
        """Make Milvus hold exactly the store's current rows for these vec_ids."""
        present: set[int] = set()
        for start in range(0, len(vec_ids), BATCH):
            chunk = vec_ids[start : start + BATCH]
            for ids, vecs in self.host.store.vectors(chunk):
                present.update(int(i) for i in ids)
                self._upsert(ids, vecs)
        gone = [v for v in vec_ids if v not in present]
        if gone:
            self.client.delete(self.collection, ids=gone)

    def _upsert(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        rows = milvus_rows(self.host.store, ids, self.host._to_index_space(vecs))
        if rows:
            self.client.upsert(self.collection, rows)

    def _record(self, gen: int) -> None:
        store = self.host.store
        with store.transaction() as conn:
            store.set_meta(conn, VECTOR_GENERATION, str(gen))
        self._gen, self._count = gen, None

    def rebuild(self) -> None:
        store = self.host.store
        db_gen = store.generation()
        n = store.count_vectors()
        self.drop()
        self._create_collection(n)
        for ids, vecs in store.vectors():
            self._upsert(ids, vecs)
        self._seal()
        self.host.manifest["index_type"] = self._kind
        self._record(db_gen)

    def flush(self) -> None:
        self.sync()
        if self._unsealed:
            self._seal()
        if self.retired:
            return
        want = resolve_kind(self.host.index_config, self.ntotal)
        if want != self._kind:
            with self.host.store.write_lock(blocking=False) as held:
                if held or getattr(self.host, "_writing", False):
                    self._reindex()
        store = self.host.store
        upto = self._shared_generation()
        hold = store.get_meta(CHANGES_HOLD)
        if hold:  # a promotion is building a shadow and reads the log from there
            upto = min(upto, int(hold))
        if upto > int(store.get_meta("pruned_upto", "0") or 0):
            store.prune_changes(upto)
            with store.transaction() as conn:
                store.set_meta(conn, "pruned_upto", str(upto))

    def _reindex(self) -> None:
        """Swap the collection's vector index for the kind its size now calls for."""
        n = self.ntotal
        kind, mtype, params = index_params(self.host.index_config, n, self.host.index_dim)
        self.client.release_collection(self.collection)
        self.client.drop_index(self.collection, "vector")
        ip = self.client.prepare_index_params()
        ip.add_index(field_name="vector", index_type=mtype, metric_type=METRIC, params=params)
        self.client.create_index(self.collection, ip)
        self.client.load_collection(self.collection)
        self._kind = kind
        self.host.manifest["index_type"] = kind

    # -- search ---------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: Filters | None = None,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        nq = queries.shape[0]
        k = max(1, min(k, max(self.ntotal, 1), MAX_TOPK))
        scores = np.full((nq, k), -np.inf, np.float32)
        ids = np.full((nq, k), -1, np.int64)
        if self.ntotal == 0:
            return scores, ids
        expr = filter_expr(filters)
        if allowed_ids is not None:
            allowed = ",".join(str(int(i)) for i in allowed_ids)
            expr = f"({expr}) and vec_id in [{allowed}]" if expr else f"vec_id in [{allowed}]"
        hits = self.client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            filter=expr,
            anns_field="vector",
            search_params=search_params(self.host.index_config, self._kind, k),
            consistency_level="Strong",
        )
        for row, found in enumerate(hits):
            for col, hit in enumerate(list(found)[:k]):
                scores[row, col] = float(hit["distance"])
                ids[row, col] = int(hit["vec_id"] if "vec_id" in hit else hit["id"])
        return scores, ids
