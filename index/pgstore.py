"""The gallery's item store on PostgreSQL: the SQLite store's methods over a connection pool.

One gallery is one schema (``gallery_<id>``) with the tables of ``index.pg_schema``. Writers
across processes and machines serialise on a session advisory lock (the SQLite store uses a
file lock); a writer that dies drops its connection and with it the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from index import pg_schema
from index.postgres import DatabaseError, PgDB, applied_version, migrate
from index.store import _ITEM_COLUMNS, EDITABLE_FIELDS, Item


def item_from_row(row: dict) -> Item:
    """An ``Item`` from a dict row holding the items columns (others are ignored)."""
    d = {k: row[k] for k in _ITEM_COLUMNS}
    d["threat"] = bool(d["threat"])
    return Item(**d)


_item = item_from_row


def _pg(where: str) -> str:
    """Our SQL fragments use SQLite's ``?`` placeholders; psycopg wants ``%s``."""
    return where.replace("?", "%s")


class PgStore:
    """Thread-safe access to one gallery's PostgreSQL schema."""

    def __init__(self, url: str, schema: str, create: bool = False) -> None:
        self.url, self.schema = url, schema
        self.db = PgDB(url, schema)
        try:
            with self.db.connection() as conn:
                if create:
                    migrate(conn, schema, pg_schema.COMPONENT, pg_schema.MIGRATIONS)
                version = applied_version(conn, schema, pg_schema.COMPONENT)
        except BaseException:
            self.db.close()
            raise
        if version != pg_schema.LATEST:
            self.db.close()
            what = "missing" if version == 0 else f"at version {version}"
            raise DatabaseError(
                f"gallery schema {schema} is {what}; this gunmatch needs version "
                f"{pg_schema.LATEST}: run 'gunmatch db upgrade'"
            )
        self.transaction = self.db.transaction
        self.close = self.db.close
        self._lock_key = f"gallery-write:{schema}"

    @contextmanager
    def write_lock(self, blocking: bool = True) -> Iterator[bool]:
        """The gallery's exclusive write lock across every replica; yields whether it is held."""
        with self.db.connection() as conn:
            if blocking:
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self._lock_key,))
            elif not conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (self._lock_key,)
            ).fetchone()[0]:
                yield False
                return
            try:
                yield True
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._lock_key,))

    def query_rows(self, sql: str, args: Iterable = ()) -> list[dict]:
        """Rows of a query (``%s`` placeholders) as dicts."""
        from psycopg.rows import dict_row

        with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, list(args)).fetchall()

    _rows = query_rows

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the meta table."""
        rows = self.db.query("SELECT value FROM meta WHERE key=%s", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, conn, key: str, value: str) -> None:
        """Set a meta value inside an open transaction."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

    def generation(self) -> int:
        """Monotonic counter bumped by every committed write."""
        return int(self.get_meta("generation", "0") or 0)

    def bump_generation(self, conn) -> int:
        """Increment the generation inside an open transaction (row-locked); the new value."""
        row = conn.execute(
            "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' "
            "RETURNING value"
        ).fetchone()
        return int(row[0])

    # -- items ----------------------------------------------------------------------------
    def insert_item(self, conn, item: Item) -> None:
        """Insert an item row inside an open transaction."""
        d = item.to_dict()
        d["threat"] = int(d["threat"])
        cols = ", ".join(_ITEM_COLUMNS)
        marks = ", ".join("%s" for _ in _ITEM_COLUMNS)
        conn.execute(f"INSERT INTO items ({cols}) VALUES ({marks})", [d[c] for c in _ITEM_COLUMNS])

    def insert_vectors(
        self, conn, item_id: str, vectors: np.ndarray, variants: list[str], gen: int
    ) -> list[int]:
        """Insert an item's vectors and log them for the index; returns their vec_ids."""
        ids = []
        for vec, variant in zip(vectors, variants, strict=True):
            blob = np.ascontiguousarray(vec, dtype=np.float32).tobytes()
            row = conn.execute(
                "INSERT INTO vectors (item_id, variant, vector) VALUES (%s, %s, %s) "
                "RETURNING vec_id",
                (item_id, variant, blob),
            ).fetchone()
            ids.append(int(row[0]))
        self.log_changes(conn, gen, "add", ids)
        return ids

    def log_changes(self, conn, gen: int, op: str, vec_ids: list[int]) -> None:
        """Log changes of vectors for the index inside a transaction."""
        if vec_ids:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO changes (generation, op, vec_id) VALUES (%s, %s, %s)",
                    [(gen, op, int(i)) for i in vec_ids],
                )

    def item_vec_ids(self, conn, item_id: str) -> list[int]:
        """An item's vector ids, inside a transaction."""
        rows = conn.execute("SELECT vec_id FROM vectors WHERE item_id=%s", (item_id,))
        return [int(r[0]) for r in rows]

    def delete_item(self, conn, item_id: str, gen: int) -> list[int]:
        """Delete an item and its vectors inside a transaction; returns removed vec_ids."""
        ids = self.item_vec_ids(conn, item_id)
        conn.execute("DELETE FROM items WHERE item_id=%s", (item_id,))
        self.log_changes(conn, gen, "remove", ids)
        return ids

    def update_item(self, conn, item_id: str, changes: dict) -> None:
        """Update editable metadata fields inside a transaction."""
        bad = set(changes) - set(EDITABLE_FIELDS)
        if bad:
            raise ValueError(f"fields cannot be edited: {', '.join(sorted(bad))}")
        if not changes:
            return
        values = [int(v) if k == "threat" else v for k, v in changes.items()]
        sets = ", ".join(f"{k}=%s" for k in changes)
        conn.execute(f"UPDATE items SET {sets} WHERE item_id=%s", [*values, item_id])

    def get_item(self, item_id: str) -> Item | None:
        """One item by id."""
        rows = self._rows("SELECT * FROM items WHERE item_id=%s", (item_id,))
        return _item(rows[0]) if rows else None

    def item_by_sha(self, sha256: str) -> Item | None:
        """One item by image sha256."""
        rows = self._rows("SELECT * FROM items WHERE sha256=%s", (sha256,))
        return _item(rows[0]) if rows else None

    def known_shas(self) -> set[str]:
        """All image hashes in the gallery."""
        return {r[0] for r in self.db.query("SELECT sha256 FROM items")}

    def list_items(
        self, where: str = "", params: Iterable = (), limit: int | None = None, offset: int = 0
    ) -> list[Item]:
        """Items ordered by insertion, optionally filtered by a SQL fragment built by us."""
        sql = "SELECT * FROM items"
        if where:
            sql += f" WHERE {_pg(where)}"
        sql += " ORDER BY added_at, item_id"
        args = list(params)
        if limit is not None:
            sql += " LIMIT %s OFFSET %s"
            args += [limit, offset]
        return [_item(r) for r in self._rows(sql, args)]

    def count_items(self, where: str = "", params: Iterable = ()) -> int:
        """Number of items matching an optional filter."""
        sql = "SELECT COUNT(*) FROM items" + (f" WHERE {_pg(where)}" if where else "")
        return int(self.db.query(sql, list(params))[0][0])

    def count_vectors(self) -> int:
        """Number of stored vectors (all variants)."""
        return int(self.db.query("SELECT COUNT(*) FROM vectors")[0][0])

    def label_counts(self) -> dict[str, int]:
        """Item count per label, counted by PostgreSQL."""
        rows = self.db.query("SELECT label, COUNT(*) FROM items GROUP BY label")
        return {label: int(n) for label, n in rows}

    def items_for_vectors(self, vec_ids: Iterable[int]) -> dict[int, Item]:
        """Map vec_id -> Item for the given vector ids."""
        ids = [int(i) for i in vec_ids]
        if not ids:
            return {}
        sql = (
            "SELECT v.vec_id AS vec_id, i.* FROM vectors v JOIN items i USING (item_id) "
            "WHERE v.vec_id = ANY(%s)"
        )
        return {int(r["vec_id"]): _item(r) for r in self._rows(sql, [ids])}

    def vec_ids_where(self, where: str, params: Iterable = ()) -> np.ndarray:
        """Vector ids whose item matches a SQL filter."""
        sql = f"SELECT v.vec_id FROM vectors v JOIN items i USING (item_id) WHERE {_pg(where)}"
        return np.array([r[0] for r in self.db.query(sql, list(params))], dtype=np.int64)

    def vectors(
        self, vec_ids: Iterable[int] | None = None, batch: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) chunks from the vectors table (all, or the given ids)."""
        if vec_ids is None:
            sql, args = "SELECT vec_id, vector FROM vectors ORDER BY vec_id", []
        else:
            wanted = [int(i) for i in vec_ids]
            if not wanted:
                return
            sql, args = "SELECT vec_id, vector FROM vectors WHERE vec_id = ANY(%s)", [wanted]
        rows = self.db.query(sql, args)
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            ids = np.array([r[0] for r in chunk], dtype=np.int64)
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in chunk])
            yield ids, vecs

    def item_vectors(self, item_id: str) -> np.ndarray:
        """All vectors stored for one item, original first."""
        rows = self.db.query(
            "SELECT vector FROM vectors WHERE item_id=%s ORDER BY variant <> 'original', vec_id",
            (item_id,),
        )
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])

    def item_vector_rows(self, item_id: str) -> list[tuple[str, np.ndarray]]:
        """(variant, vector) of one item in insertion order (what a copy must reproduce)."""
        rows = self.db.query(
            "SELECT variant, vector FROM vectors WHERE item_id=%s ORDER BY vec_id", (item_id,)
        )
        return [(r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows]

    def changes_since(self, generation: int) -> list[tuple[int, str, int]]:
        """Logged (generation, op, vec_id) rows newer than ``generation``, in order."""
        rows = self.db.query(
            "SELECT generation, op, vec_id FROM changes WHERE generation > %s "
            "ORDER BY generation, seq",
            (generation,),
        )
        return [(int(g), op, int(v)) for g, op, v in rows]

    def prune_changes(self, upto_generation: int) -> None:
        """Forget change-log rows already reflected by the vector index."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM changes WHERE generation <= %s", (upto_generation,))
