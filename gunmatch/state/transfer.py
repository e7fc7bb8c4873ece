"""Copying a gallery's service state between stores (``state.sqlite`` <-> PostgreSQL), verified.

API keys (hashes, roles, names, dates, revocations; a key's secret is never stored anywhere),
analyst feedback and the audit chain are copied row by row *with their ids*, in id order, and
the chain head with them. The copy is verbatim: a row's MAC covers its id, its content, the
previous row's MAC and the secret's id (``audit.row_mac``), nothing about the store, so the
copy verifies with the same secret and no row is ever re-signed. Web sessions are not copied
(their users sign in again); the report says how many were left behind. Files the rows name
(feedback images, audit query images still within retention) are copied into the destination's
state directory. The destination must hold no keys, sessions, audit rows or feedback: two
chains are never merged. Both sides are then counted and digested per table, like
``index.transfer`` does for the gallery.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gunmatch.state import pg_schema
from gunmatch.state.audit import audit_tables
from gunmatch.state.backend import STATE_DB, StateLocation, open_state_db
from gunmatch.state.keys import KeyStore
from gunmatch.state.sessions import SessionStore
from index.feedback import FeedbackStore
from index.postgres import PortablePgDB
from index.sqlite import SqliteDB

# The tables copied, with the columns copied (every column), parents before children.
TABLES: dict[str, tuple[str, ...]] = {
    "api_keys": ("id", "name", "role", "key_hash", "prefix", "created_at", "revoked_at",
                 "last_used_at"),
    "audit_log": ("id", "ts", "action", "key_name", "query_id", "image_sha256", "image_file",
                  "model_id", "decision", "results", "prev_hash", "hash", "key_id"),
    "feedback": ("id", "created_at", "key_name", "query_id", "query_sha256", "query_image",
                 "item_id", "verdict", "correct_label", "added_item_id"),
}  # fmt: skip
# The column naming a file under the state directory (feedback image, kept query image).
IMAGE_COLUMN = {"audit_log": "image_file", "feedback": "query_image"}
# Tables that must be empty in the destination (sessions are not copied but would dangle).
HELD = (*TABLES, "sessions")
FILES = "files"  # the report's entry for the image files the rows name
PAGE = 5000


class StateNotEmptyError(ValueError):
    """The destination state already holds rows (two chains are never merged)."""


@dataclass
class TableDigest:
    """Rows of one table (or files) and one SHA-256 over them."""

    rows: int
    sha256: str


@dataclass
class StateReport:
    """What a state copy wrote, and whether both sides agree."""

    source: dict[str, TableDigest]
    copy: dict[str, TableDigest]
    sessions_dropped: int

    @property
    def ok(self) -> bool:
        """Every table's (and the files') count and digest equal on both sides."""
        return self.source == self.copy

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"ok": self.ok, **asdict(self)}


@contextmanager
def _opened(location: StateLocation, create: bool) -> Iterator[Any]:
    """The state's database (None: an embedded state that has no file and ``create`` is off).
    An embedded file gets every state table it lacks, as the stores would create them."""
    if location.shared:
        db: Any = open_state_db(location, max_size=2)
    else:
        path = location.state_dir / STATE_DB
        if not path.is_file() and not create:
            yield None
            return
        for store in (KeyStore(path), SessionStore(path), FeedbackStore(path), audit_tables(path)):
            store.close()
        db = SqliteDB(path, "")
    try:
        yield db
    finally:
        db.close()


def held_rows(location: StateLocation) -> dict[str, int]:
    """Rows the state at ``location`` holds, per table (only those with rows); a state not
    yet created holds none."""
    if location.shared:
        db = PortablePgDB(location.url, location.schema, max_size=1)
        try:
            with db.db.connection() as conn:
                if pg_schema.version(conn, location.schema) == 0:
                    return {}
            return _counts(db)
        finally:
            db.close()
    if not (location.state_dir / STATE_DB).is_file():
        return {}
    with _opened(location, create=False) as db:
        return _counts(db)


def _counts(db: Any) -> dict[str, int]:
    counts = {t: int(db.query(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in HELD}
    return {t: n for t, n in counts.items() if n}


def check_empty(location: StateLocation) -> None:
    """Raise StateNotEmptyError when ``location`` already holds state rows."""
    _refuse(held_rows(location), location)


def _refuse(held: dict[str, int], location: StateLocation) -> None:
    if held:
        rows = ", ".join(f"{n} {t}" for t, n in held.items())
        raise StateNotEmptyError(
            f"the state in {location.describe()} already holds rows ({rows}); a state is "
            "copied only into an empty one (two audit chains are never merged)"
        )


def _row_bytes(values: list) -> bytes:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _pages(conn: Any, table: str, cols: tuple[str, ...]) -> Iterator[list[list]]:
    """A table's rows (values in ``cols`` order) by id, a page at a time."""
    after = -1
    while True:
        page = conn.execute(
            f"SELECT {', '.join(cols)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
            (after, PAGE),
        ).fetchall()
        yield [[r[c] for c in cols] for r in page]
        if len(page) < PAGE:
            return
        after = page[-1]["id"]


def _head(conn: Any) -> list | None:
    """The chain head's [last_id, hash]; None for an empty chain (SQLite has no head row
    yet, PostgreSQL's migration made one at the genesis)."""
    row = conn.execute("SELECT last_id, hash FROM audit_head WHERE one=1").fetchone()
    return [int(row["last_id"]), row["hash"]] if row and int(row["last_id"]) else None


def _files(rows_by_table: dict[str, set[str]], state_dir: Path) -> TableDigest:
    """Count and digest the named files present under ``state_dir``."""
    h, n = hashlib.sha256(), 0
    for rel in sorted(set().union(*rows_by_table.values())):
        path = state_dir / rel
        if path.is_file():
            h.update(_row_bytes([rel, hashlib.sha256(path.read_bytes()).hexdigest()]))
            n += 1
    return TableDigest(n, h.hexdigest())


def _inside(root: Path, rel: str) -> bool:
    path = (root / rel).resolve()
    return path == root.resolve() or root.resolve() in path.parents


def _copy_files(names: set[str], src_dir: Path, dest_dir: Path) -> None:
    """Copy each named file still present at the source (0600, its dates kept: the audit
    retention clock runs on)."""
    for rel in sorted(names):
        src, dest = src_dir / rel, dest_dir / rel
        if not src.is_file() or not _inside(src_dir, rel) or not _inside(dest_dir, rel):
            continue
        if dest.exists() and (dest.samefile(src) or dest.read_bytes() == src.read_bytes()):
            continue
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        dest.chmod(0o600)


def _digest(conn: Any | None) -> dict[str, TableDigest]:
    """Each table's rows (in id order, every column) and, for the audit log, the chain head,
    counted and digested; ``conn`` None: a state with no rows at all."""
    out = {}
    for table, cols in TABLES.items():
        h, n = hashlib.sha256(), 0
        for page in _pages(conn, table, cols) if conn is not None else ():
            for values in page:
                h.update(_row_bytes(values))
                n += 1
        if table == "audit_log":
            h.update(_row_bytes(["head", *((_head(conn) if conn is not None else None) or [])]))
        out[table] = TableDigest(n, h.hexdigest())
    return out


def _reset_ids(conn: Any, db: Any) -> None:
    """PostgreSQL identities continue after the copied ids (SQLite's AUTOINCREMENT does so
    by itself)."""
    if db.dialect != "postgresql":
        return
    for table in TABLES:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence(?, 'id'), COALESCE(MAX(id), 1),"
            f" MAX(id) IS NOT NULL) FROM {table}",
            (f"{db.schema}.{table}",),
        )


def copy_state(src: StateLocation, dest: StateLocation) -> StateReport:
    """Copy the state at ``src`` into the empty state at ``dest`` (one transaction there),
    then its files; returns both sides' counts and digests. StateNotEmptyError if ``dest``
    holds rows (checked again inside the transaction)."""
    if src == dest:
        raise ValueError(f"the state in {src.describe()} cannot be copied onto itself")
    with _opened(src, create=False) as sdb, _opened(dest, create=True) as ddb:
        if sdb is None:  # an embedded gallery that never served: nothing to carry
            none = {FILES: _files({}, src.state_dir)}
            return StateReport({**_digest(None), **none}, {**_digest_of(ddb), **none}, 0)
        names: dict[str, set[str]] = {table: set() for table in IMAGE_COLUMN}
        with sdb.snapshot() as sconn, ddb.transaction() as dconn:
            # The chain head locked first: an appender elsewhere waits for this copy.
            dconn.execute("SELECT hash FROM audit_head" + ddb.lock_clause).fetchall()
            _refuse({t: n for t in HELD if (n := _count(dconn, t))}, dest)
            for table, cols in TABLES.items():
                insert = (
                    f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                )
                for page in _pages(sconn, table, cols):
                    for values in page:
                        dconn.execute(insert, values)
                        if table in IMAGE_COLUMN and values[cols.index(IMAGE_COLUMN[table])]:
                            names[table].add(values[cols.index(IMAGE_COLUMN[table])])
            src_head = _head(sconn)
            if src_head is not None:
                moved = dconn.execute(
                    "UPDATE audit_head SET last_id=?, hash=? WHERE one=1", src_head
                ).rowcount
                if not moved:
                    dconn.execute("INSERT INTO audit_head(one, last_id, hash) VALUES (1, ?, ?)",
                                  src_head)  # fmt: skip
            _reset_ids(dconn, ddb)
            source = _digest(sconn)
            sessions = _count(sconn, "sessions")
        _copy_files(set().union(*names.values()), src.state_dir, dest.state_dir)
        copy = _digest_of(ddb)
        source[FILES] = _files(names, src.state_dir)
        copy[FILES] = _files(names, dest.state_dir)
        return StateReport(source, copy, sessions)


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _digest_of(db: Any) -> dict[str, TableDigest]:
    with db.snapshot() as conn:
        return _digest(conn)
