"""A candidate model's vectors for a shared gallery, built beside the live ones, then switched.

Promotion, rollback and re-indexing of a shared gallery (items on PostgreSQL, vectors on
Milvus) never touch the live collection while they work. The candidate's vector for each
item's original vector goes to the ``shadow_vectors`` table under the same ``vec_id``
(tagged with the candidate's model id) and to a new Milvus collection. ``pending`` lists the
items that still need a vector (all at first; afterwards what replicas added meanwhile), so
a catch-up is the same call again; ``refresh`` applies what else changed since the build
began: removed items (deleted by the foreign key's cascade) leave the collection, and items
whose metadata the change log shows edited are written again (the log is held from pruning
while a shadow is built; see ``index.backends.milvus_backend``).

``commit`` switches in one PostgreSQL transaction, with the gallery's write lock held: the
live vectors take the candidate's bytes in place (the same ``vec_id``s, so a replica still
searching the old collection resolves its hits until it reloads), the outgoing model's
originals are kept in ``shadow_vectors`` under its model id (a rollback re-embeds only the
items added since), other variants are dropped (re-embedding keeps one vector per item, as an
embedded shadow does), and the store records the new model and collection: a replica that has
not reloaded yet finds its collection retired, never writes to it and is refused writes. The
collection retired by the previous switch is dropped then; the one just retired is kept until
the next switch. ``switch_files`` then replaces the model directory, calibration and manifest
the replicas load (all written beside first, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from index.backends.milvus_backend import (
    CHANGES_HOLD,
    LIVE_COLLECTION,
    VECTOR_GENERATION,
    connect,
    create_collection,
    milvus_rows,
)
from index.backends.milvus_params import check_collection_name
from index.consistency import LIVE_MODEL
from index.files import atomic_write, swap_in
from index.gallery import CALIBRATION_FILE, MODEL_DIR, Gallery
from index.pgstore import item_from_row
from index.store import Item
from index.types import GalleryError

RETIRED_COLLECTION = "retired_collection"
BATCH = 500
# Each item's original vector: the one named 'original', else its first.
_ORIGINALS = (
    "SELECT DISTINCT ON (item_id) vec_id, item_id FROM vectors "
    "ORDER BY item_id, variant <> 'original', vec_id"
)


def switch_in_place(manifest: dict, root: Path) -> bool:
    """Whether a gallery's model switch happens in its database (PostgreSQL items + Milvus
    vectors: True) or by swapping directories (embedded: False); refuses other mixes."""
    items = (manifest.get("item_store") or {}).get("backend", "sqlite")
    vectors = (manifest.get("vector_store") or {}).get("backend", "faiss")
    if (items, vectors) == ("sqlite", "faiss"):
        return False
    if (items, vectors) == ("postgresql", "milvus"):
        return True
    raise GalleryError(
        f"{root} is a shared gallery with items on {items} and vectors on {vectors}: its model "
        "can be switched in place only with items on PostgreSQL and vectors on Milvus; "
        "'gunmatch gallery export' it, switch the copy, then 'gunmatch gallery import' it"
    )


def shadow_collection(live: str, model_id: str) -> str:
    """The collection a shadow of ``model_id`` is built in: the live name's stem + a digest."""
    stem = live.split("__")[0][:200]
    return check_collection_name(f"{stem}__{hashlib.sha256(model_id.encode()).hexdigest()[:12]}")


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class SharedShadow:
    """The shadow vector set of one candidate model; ``begin`` starts it."""

    def __init__(self, gallery: Gallery, model_id: str, dim: int, client, since: int) -> None:
        self.gallery, self.store = gallery, gallery.store
        self.model_id, self.dim = model_id, dim
        self.client = client
        self.collection = shadow_collection(gallery.backend_spec.collection, model_id)
        self.since = since  # the store generation the build began at
        self.kind = "flat"
        self.indexed: set[int] = set()
        self.kept = 0  # shadow vectors of this model already stored when the build began
        self._claim = None  # the connection holding the gallery's shadow lock

    @classmethod
    def begin(cls, gallery: Gallery, model_id: str, dim: int) -> SharedShadow:
        """Hold the change log, create an empty collection, index any vectors already kept."""
        spec = gallery.backend_spec
        if not switch_in_place(gallery.manifest, gallery.root):
            raise GalleryError(f"{gallery.root} is embedded: its shadow is a directory")
        if model_id == gallery.model_id:
            raise GalleryError(f"{gallery.root} already uses model {model_id}")
        store = gallery.store
        claim = _claim(store)
        since = store.generation()
        with store.transaction() as conn:
            store.set_meta(conn, CHANGES_HOLD, str(since))
        shadow = cls(gallery, model_id, dim, connect(spec.uri), since)
        shadow._claim = claim
        try:
            # A leftover of an interrupted build, or the collection this model was retired
            # with two switches ago: the vectors in PostgreSQL are the truth, so start anew.
            if shadow.client.has_collection(shadow.collection):
                shadow.client.drop_collection(shadow.collection)
            shadow.kind = create_collection(
                shadow.client, shadow.collection, dim, gallery.index_config, store.count_items()
            )
            shadow.kept = shadow._index_stored()
        except BaseException:
            shadow.discard()
            shadow.close()
            raise
        return shadow

    # -- building -------------------------------------------------------------------------
    def pending(self) -> list[tuple[int, Item]]:
        """(original vec_id, item) of every item with no vector of this model yet."""
        rows = self.store.query_rows(
            f"SELECT o.vec_id AS o_vec_id, i.* FROM ({_ORIGINALS}) o JOIN items i USING (item_id) "
            "WHERE NOT EXISTS (SELECT 1 FROM shadow_vectors s "
            "WHERE s.model_id = %s AND s.vec_id = o.vec_id) ORDER BY i.added_at, i.item_id",
            [self.model_id],
        )
        return [(int(r["o_vec_id"]), item_from_row(r)) for r in rows]

    def put(self, vec_ids: list[int], vectors: np.ndarray) -> None:
        """Store this model's vectors for these original vec_ids and index them (an item
        removed meanwhile is skipped)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(vec_ids):
            raise ValueError(f"expected {len(vec_ids)} vectors of dimension {self.dim}")
        pairs = zip(vec_ids, vectors, strict=True)
        with self.store.transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO shadow_vectors (model_id, vec_id, vector) "
                "SELECT %s, %s, %s WHERE EXISTS (SELECT 1 FROM vectors WHERE vec_id = %s) "
                "ON CONFLICT (model_id, vec_id) DO UPDATE SET vector = EXCLUDED.vector",
                [(self.model_id, int(v), _blob(x), int(v)) for v, x in pairs],
            )
        self._index(np.asarray(vec_ids, dtype=np.int64), vectors)

    def _index(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = milvus_rows(self.store, ids, vectors)
        if rows:
            self.client.upsert(self.collection, rows)
            self.indexed.update(r["vec_id"] for r in rows)

    def _stored(self, vec_ids: list[int] | None = None):
        """(vec_ids, vectors) of this model's stored shadow vectors, in batches."""
        sql, args = "SELECT vec_id, vector FROM shadow_vectors WHERE model_id = %s", [self.model_id]
        if vec_ids is not None:
            sql, args = sql + " AND vec_id = ANY(%s)", [*args, list(vec_ids)]
        rows = self.store.db.query(sql + " ORDER BY vec_id", args)
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            ids = np.array([r[0] for r in chunk], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in chunk])

    def _index_stored(self) -> int:
        n = 0
        for ids, vecs in self._stored():
            self._index(ids, vecs)
            n += len(ids)
        return n

    def refresh(self) -> dict:
        """Apply to the collection what changed in the store since the last refresh (or the
        build's start): removed items leave it, items with edited metadata are rewritten."""
        mark = self.store.generation()
        have = {int(r[0]) for r in self.store.db.query(
            "SELECT vec_id FROM shadow_vectors WHERE model_id = %s", [self.model_id]
        )}  # fmt: skip
        gone = sorted(self.indexed - have)
        if gone:
            self.client.delete(self.collection, ids=gone)
            self.indexed.difference_update(gone)
        pruned = int(self.store.get_meta("pruned_upto", "0") or 0)
        if pruned > self.since:  # the log was pruned past our start: rewrite every row
            touched = have
        else:
            touched = {v for _, op, v in self.store.changes_since(self.since) if op == "add"}
        touched &= have
        for ids, vecs in self._stored(sorted(touched)):
            self._index(ids, vecs)
        self.since = mark
        return {"removed": len(gone), "rewritten": len(touched)}

    def rows(self) -> tuple[list[Item], np.ndarray]:
        """Every item with this model's vector for it (evaluation of the candidate)."""
        rows = self.store.query_rows(
            "SELECT s.vector AS s_vector, i.* FROM shadow_vectors s "
            "JOIN vectors v ON v.vec_id = s.vec_id JOIN items i ON i.item_id = v.item_id "
            "WHERE s.model_id = %s ORDER BY i.added_at, i.item_id",
            [self.model_id],
        )
        items = [item_from_row(r) for r in rows]
        vecs = [np.frombuffer(r["s_vector"], dtype=np.float32) for r in rows]
        return items, (np.stack(vecs) if vecs else np.zeros((0, self.dim), np.float32))

    def manifest(self) -> dict:
        """The gallery's manifest after the switch: new model, dimension and collection (the
        PCA transform, fitted to the old model's vectors, is not carried over)."""
        m = {k: v for k, v in self.gallery.manifest.items() if k != "transform"}
        m |= {"model_id": self.model_id, "dim": int(self.dim), "index_type": self.kind}
        m["vector_store"] = replace(self.gallery.backend_spec, collection=self.collection).to_dict()
        return m

    # -- ending ---------------------------------------------------------------------------
    def commit(self) -> int:
        """Switch the item store to this model (the caller holds the gallery's write lock and
        has caught up: no item may lack a vector); returns the new store generation."""
        if self.pending():
            raise GalleryError("the shadow lacks items added since it was built: catch up first")
        store, new, old = self.store, self.model_id, self.gallery.model_id
        old_collection = self.gallery.backend_spec.collection
        before = store.get_meta(RETIRED_COLLECTION)
        self.client.flush(self.collection)  # sealed and indexed before any replica searches it
        with store.transaction() as conn:
            gen = store.bump_generation(conn)
            conn.execute(
                "DELETE FROM shadow_vectors WHERE model_id <> %s AND model_id <> %s", (new, old)
            )
            conn.execute(
                "INSERT INTO shadow_vectors (model_id, vec_id, vector) "
                "SELECT %s, v.vec_id, v.vector FROM vectors v JOIN shadow_vectors s "
                "ON s.vec_id = v.vec_id AND s.model_id = %s "
                "ON CONFLICT (model_id, vec_id) DO UPDATE SET vector = EXCLUDED.vector",
                (old, new),
            )
            conn.execute(
                "UPDATE vectors v SET vector = s.vector FROM shadow_vectors s "
                "WHERE s.model_id = %s AND s.vec_id = v.vec_id",
                (new,),
            )
            conn.execute(
                "DELETE FROM vectors v WHERE NOT EXISTS (SELECT 1 FROM shadow_vectors s "
                "WHERE s.model_id = %s AND s.vec_id = v.vec_id)",
                (new,),
            )
            conn.execute("DELETE FROM shadow_vectors WHERE model_id = %s", (new,))
            conn.execute("DELETE FROM meta WHERE key = %s", (CHANGES_HOLD,))
            for key, value in (
                (VECTOR_GENERATION, str(gen)),
                (LIVE_MODEL, new),
                (LIVE_COLLECTION, self.collection),
                (RETIRED_COLLECTION, old_collection),
            ):
                store.set_meta(conn, key, value)
        stale = before and before not in (self.collection, old_collection)
        if stale and self.client.has_collection(before):
            self.client.drop_collection(before)
        return gen

    def discard(self) -> None:
        """Drop the shadow (a refused gate, a failure): its collection, the vectors it stored
        (those kept from an earlier switch stay), the hold on the change log."""
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        with self.store.transaction() as conn:
            if not self.kept:
                conn.execute("DELETE FROM shadow_vectors WHERE model_id = %s", (self.model_id,))
            conn.execute("DELETE FROM meta WHERE key = %s", (CHANGES_HOLD,))

    def close(self) -> None:
        """Release the Milvus connection and the claim on the gallery (idempotent)."""
        self.client.close()
        conn, self._claim = self._claim, None
        if conn is not None:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_claim_key(self.store),))
            finally:
                self.store.db.pool.putconn(conn)


def _claim_key(store) -> str:
    return f"gallery-shadow:{store.schema}"


def _claim(store):
    """A pooled connection holding the gallery's shadow lock: one promotion, rollback or
    reindex of a gallery at a time (they share the change-log hold and the kept vectors)."""
    conn = store.db.pool.getconn()
    try:
        held = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (_claim_key(store),)
        ).fetchone()[0]
    except BaseException:
        store.db.pool.putconn(conn)
        raise
    if not held:
        store.db.pool.putconn(conn)
        raise GalleryError(
            f"another promotion, rollback or reindex of schema {store.schema} is running"
        )
    return conn


def switch_files(root: Path, manifest: dict, model_dir: Path, calibration: Path | None) -> None:
    """Put a switched gallery's files in place: ``model_dir`` (written beside, on the same
    file system) exchanged for ``root/model``, the calibration replaced (or removed when
    ``calibration`` is None), then the manifest, last, each by rename."""
    swap_in(model_dir, root / MODEL_DIR)
    target = root / CALIBRATION_FILE
    if calibration is not None:
        os.replace(calibration, target)
    elif target.exists():
        target.unlink()
    atomic_write(root / "manifest.json", json.dumps(manifest, indent=2).encode())
