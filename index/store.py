"""SQLite metadata store: items, their vectors, and a change log the FAISS index replays.

SQLite is the source of truth. The FAISS file is a cache of the ``vectors`` table at some
``generation``; after a crash the index is brought up to date by replaying ``changes``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from index.sqlite import SqliteDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id    TEXT PRIMARY KEY,
    label      TEXT NOT NULL,
    category   TEXT NOT NULL,
    make_model TEXT NOT NULL DEFAULT '',
    calibre    TEXT NOT NULL DEFAULT '',
    modality   TEXT NOT NULL,
    threat     INTEGER NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    notes      TEXT NOT NULL DEFAULT '',
    sha256     TEXT NOT NULL UNIQUE,
    added_at   TEXT NOT NULL,
    added_by   TEXT NOT NULL DEFAULT '',
    image_file TEXT NOT NULL DEFAULT '',
    thumb_file TEXT NOT NULL DEFAULT '',
    width      INTEGER NOT NULL DEFAULT 0,
    height     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_label ON items(label);
CREATE INDEX IF NOT EXISTS items_category ON items(category);
CREATE TABLE IF NOT EXISTS vectors (
    vec_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items(item_id) ON DELETE CASCADE,
    variant TEXT NOT NULL DEFAULT 'original',
    vector  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_item ON vectors(item_id);
CREATE TABLE IF NOT EXISTS changes (
    generation INTEGER NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    vec_id     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_generation ON changes(generation);
"""

EDITABLE_FIELDS = ("label", "category", "make_model", "calibre", "threat", "source", "notes")


@dataclass
class Item:
    """One reference image and its metadata."""

    item_id: str
    label: str
    category: str
    modality: str
    threat: bool
    sha256: str
    added_at: str
    make_model: str = ""
    calibre: str = ""
    source: str = ""
    notes: str = ""
    added_by: str = ""
    image_file: str = ""
    thumb_file: str = ""
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


_ITEM_COLUMNS = tuple(f.name for f in fields(Item))


def _row_to_item(row: sqlite3.Row) -> Item:
    d = {k: row[k] for k in _ITEM_COLUMNS}
    d["threat"] = bool(d["threat"])
    return Item(**d)


class Store:
    """Thread-safe access to one gallery's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = SqliteDB(path, SCHEMA, foreign_keys=True)
        self.conn = self.db.conn
        self._lock = self.db.lock
        self.transaction = self.db.transaction
        self.close = self.db.close

    @contextmanager
    def write_lock(self, blocking: bool = True) -> Iterator[bool]:
        """The gallery's exclusive write lock (a file lock beside the database), across
        processes; yields whether it is held (always True when ``blocking``)."""
        fd = os.open(self.path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- meta -----------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value from the meta table."""
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        """Set a meta value inside an open transaction."""
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        """Monotonic counter bumped by every committed write."""
        return int(self.get_meta("generation", "0") or 0)

    def bump_generation(self, conn: sqlite3.Connection) -> int:
        """Increment the generation inside an open transaction; returns the new value."""
        row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        gen = int(row[0]) + 1 if row else 1
        self.set_meta(conn, "generation", str(gen))
        return gen

    # -- items ----------------------------------------------------------------------------
    def insert_item(self, conn: sqlite3.Connection, item: Item) -> None:
        """Insert an item row inside an open transaction."""
        d = item.to_dict()
        d["threat"] = int(d["threat"])
        cols = ", ".join(_ITEM_COLUMNS)
        marks = ", ".join("?" for _ in _ITEM_COLUMNS)
        conn.execute(f"INSERT INTO items ({cols}) VALUES ({marks})", [d[c] for c in _ITEM_COLUMNS])

    def insert_vectors(
        self,
        conn: sqlite3.Connection,
        item_id: str,
        vectors: np.ndarray,
        variants: list[str],
        gen: int,
    ) -> list[int]:
        """Insert an item's vectors and log them for the index; returns their vec_ids."""
        ids = []
        for vec, variant in zip(vectors, variants, strict=True):
            blob = np.ascontiguousarray(vec, dtype=np.float32).tobytes()
            cur = conn.execute(
                "INSERT INTO vectors(item_id, variant, vector) VALUES (?, ?, ?)",
                (item_id, variant, blob),
            )
            ids.append(int(cur.lastrowid))
        conn.executemany(
            "INSERT INTO changes(generation, op, vec_id) VALUES (?, 'add', ?)",
            [(gen, i) for i in ids],
        )
        return ids

    def log_changes(self, conn: sqlite3.Connection, gen: int, op: str, vec_ids: list[int]) -> None:
        """Log changes of vectors for the index inside a transaction."""
        conn.executemany(
            "INSERT INTO changes(generation, op, vec_id) VALUES (?, ?, ?)",
            [(gen, op, int(i)) for i in vec_ids],
        )

    def item_vec_ids(self, conn: sqlite3.Connection, item_id: str) -> list[int]:
        """An item's vector ids, inside a transaction."""
        return [
            r[0] for r in conn.execute("SELECT vec_id FROM vectors WHERE item_id=?", (item_id,))
        ]

    def delete_item(self, conn: sqlite3.Connection, item_id: str, gen: int) -> list[int]:
        """Delete an item and its vectors inside a transaction; returns removed vec_ids."""
        ids = [r[0] for r in conn.execute("SELECT vec_id FROM vectors WHERE item_id=?", (item_id,))]
        conn.execute("DELETE FROM items WHERE item_id=?", (item_id,))
        conn.executemany(
            "INSERT INTO changes(generation, op, vec_id) VALUES (?, 'remove', ?)",
            [(gen, i) for i in ids],
        )
        return ids

    def update_item(self, conn: sqlite3.Connection, item_id: str, changes: dict) -> None:
        """Update editable metadata fields inside a transaction."""
        bad = set(changes) - set(EDITABLE_FIELDS)
        if bad:
            raise ValueError(f"fields cannot be edited: {', '.join(sorted(bad))}")
        if not changes:
            return
        values = [int(v) if k == "threat" else v for k, v in changes.items()]
        sets = ", ".join(f"{k}=?" for k in changes)
        conn.execute(f"UPDATE items SET {sets} WHERE item_id=?", [*values, item_id])

    def get_item(self, item_id: str) -> Item | None:
        """One item by id."""
        with self._lock:
            row = self.conn.execute("SELECT * FROM items WHERE item_id=?", (item_id,)).fetchone()
        return _row_to_item(row) if row else None

    def item_by_sha(self, sha256: str) -> Item | None:
        """One item by image sha256."""
        with self._lock:
            row = self.conn.execute("SELECT * FROM items WHERE sha256=?", (sha256,)).fetchone()
        return _row_to_item(row) if row else None

    def known_shas(self) -> set[str]:
        """All image hashes in the gallery."""
        with self._lock:
            return {r[0] for r in self.conn.execute("SELECT sha256 FROM items")}

    def list_items(
        self, where: str = "", params: Iterable = (), limit: int | None = None, offset: int = 0
    ) -> list[Item]:
        """Items ordered by insertion, optionally filtered by a SQL fragment built by us."""
        sql = "SELECT * FROM items"
        if where:
            sql += f" WHERE {where}"
        sql += " ORDER BY added_at, item_id"
        args = list(params)
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        with self._lock:
            return [_row_to_item(r) for r in self.conn.execute(sql, args)]

    def count_items(self, where: str = "", params: Iterable = ()) -> int:
        """Number of items matching an optional filter."""
        sql = "SELECT COUNT(*) FROM items" + (f" WHERE {where}" if where else "")
        with self._lock:
            return int(self.conn.execute(sql, list(params)).fetchone()[0])

    def count_vectors(self) -> int:
        """Number of stored vectors (all variants)."""
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def label_counts(self) -> dict[str, int]:
        """Item count per label, counted by SQLite (no item rows are loaded)."""
        with self._lock:
            rows = self.conn.execute("SELECT label, COUNT(*) FROM items GROUP BY label")
            return {label: int(n) for label, n in rows}

    def items_for_vectors(self, vec_ids: Iterable[int]) -> dict[int, Item]:
        """Map vec_id -> Item for the given vector ids."""
        ids = [int(i) for i in vec_ids]
        if not ids:
            return {}
        marks = ",".join("?" for _ in ids)
        sql = (
            f"SELECT v.vec_id AS vec_id, i.* FROM vectors v JOIN items i USING(item_id) "
            f"WHERE v.vec_id IN ({marks})"
        )
        with self._lock:
            return {int(r["vec_id"]): _row_to_item(r) for r in self.conn.execute(sql, ids)}

    def vec_ids_where(self, where: str, params: Iterable = ()) -> np.ndarray:
        """Vector ids whose item matches a SQL filter."""
        sql = f"SELECT v.vec_id FROM vectors v JOIN items i USING(item_id) WHERE {where}"
        with self._lock:
            return np.fromiter((r[0] for r in self.conn.execute(sql, list(params))), dtype=np.int64)

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
            marks = ",".join("?" * len(wanted))
            sql = f"SELECT vec_id, vector FROM vectors WHERE vec_id IN ({marks})"
            args = wanted
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            ids = np.array([r[0] for r in chunk], dtype=np.int64)
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in chunk])
            yield ids, vecs

    def item_vectors(self, item_id: str) -> np.ndarray:
        """All vectors stored for one item, original first."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT vector FROM vectors WHERE item_id=? ORDER BY variant != 'original', vec_id",
                (item_id,),
            ).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])

    def item_vector_rows(self, item_id: str) -> list[tuple[str, np.ndarray]]:
        """(variant, vector) of one item in insertion order (what a copy must reproduce)."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT variant, vector FROM vectors WHERE item_id=? ORDER BY vec_id", (item_id,)
            ).fetchall()
        return [(r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows]

    def changes_since(self, generation: int) -> list[tuple[int, str, int]]:
        """Logged (generation, op, vec_id) rows newer than ``generation``, in order."""
        with self._lock:
            return [
                (int(g), op, int(v))
                for g, op, v in self.conn.execute(
                    "SELECT generation, op, vec_id FROM changes WHERE generation>? "
                    "ORDER BY generation, rowid",
                    (generation,),
                )
            ]

    def prune_changes(self, upto_generation: int) -> None:
        """Forget change-log rows already persisted in the index file."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM changes WHERE generation<=?", (upto_generation,))
