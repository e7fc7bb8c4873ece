"""Hash-chained audit log of searches, comparisons and gallery changes.

Each row stores the SHA-256 of the previous row's hash plus its own canonical content, so
editing a row breaks its own hash and deleting one breaks the next row's link. The newest
row's id and hash are also kept in ``audit_head`` (updated in the same transaction), so
deleting rows at the end is detected too. Query images are kept under ``queries/`` next to
the database and purged after the retention period; rows themselves are never purged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from index.sqlite import SqliteDB

GENESIS = "0" * 64
QUERY_DIR = "queries"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ts           TEXT NOT NULL,
    action       TEXT NOT NULL,
    key_name     TEXT NOT NULL,
    query_id     TEXT NOT NULL DEFAULT '',
    image_sha256 TEXT NOT NULL DEFAULT '',
    image_file   TEXT NOT NULL DEFAULT '',
    model_id     TEXT NOT NULL DEFAULT '',
    decision     TEXT NOT NULL DEFAULT '',
    results      TEXT NOT NULL DEFAULT 'null',
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_sha ON audit_log(image_sha256);
CREATE INDEX IF NOT EXISTS audit_query ON audit_log(query_id);
CREATE TABLE IF NOT EXISTS audit_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    hash    TEXT NOT NULL
);
"""

_HASHED = (
    "id",
    "ts",
    "action",
    "key_name",
    "query_id",
    "image_sha256",
    "image_file",
    "model_id",
    "decision",
    "results",
    "prev_hash",
)


@dataclass(frozen=True)
class AuditRecord:
    """One audit row; ``results`` is the JSON text that was hashed."""

    id: int
    ts: str
    action: str
    key_name: str
    query_id: str
    image_sha256: str
    image_file: str
    model_id: str
    decision: str
    results: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        """JSON-ready dict with ``results`` decoded."""
        d = asdict(self)
        d["results"] = json.loads(self.results)
        return d


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of checking the chain."""

    ok: bool
    rows: int
    bad_id: int | None = None
    problem: str = ""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def row_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the hashed fields (prev_hash included)."""
    payload = json.dumps([fields[k] for k in _HASHED], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _record(r) -> AuditRecord:
    return AuditRecord(**{k: r[k] for k in (*_HASHED, "hash")})


class AuditLog:
    """Append-only, hash-chained log in ``<state_dir>/state.sqlite``."""

    def __init__(self, state_dir: str | Path, db_name: str = "state.sqlite") -> None:
        self.state_dir = Path(state_dir)
        self.db = SqliteDB(self.state_dir / db_name, _SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # -- writing --------------------------------------------------------------------------
    def store_image(self, data: bytes, ext: str = ".img") -> tuple[str, str]:
        """Keep a query image; returns (sha256, path relative to the state dir)."""
        sha = hashlib.sha256(data).hexdigest()
        ext = ext if ext.startswith(".") else f".{ext}"
        rel = f"{QUERY_DIR}/{sha}{ext.lower()}"
        path = self.state_dir / rel
        if path.exists():
            os.utime(path)  # a repeat query restarts the retention clock
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha, rel

    def append(
        self,
        action: str,
        key_name: str,
        query_id: str = "",
        image_sha256: str = "",
        image_file: str = "",
        model_id: str = "",
        decision: str = "",
        results: Any = None,
    ) -> AuditRecord:
        """Add one row, chained to the newest one, in a single transaction."""
        results_text = json.dumps(results, ensure_ascii=False, sort_keys=True)
        with self.db.transaction() as conn:
            head = conn.execute("SELECT last_id, hash FROM audit_head WHERE one=1").fetchone()
            prev = head["hash"] if head else GENESIS
            cur = conn.execute(
                "INSERT INTO audit_log(ts, action, key_name, query_id, image_sha256, image_file,"
                " model_id, decision, results, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,'')",
                (
                    _now(),
                    action,
                    key_name,
                    query_id,
                    image_sha256,
                    image_file,
                    model_id,
                    decision,
                    results_text,
                    prev,
                ),
            )
            new_id = int(cur.lastrowid)
            row = conn.execute("SELECT * FROM audit_log WHERE id=?", (new_id,)).fetchone()
            digest = row_hash({k: row[k] for k in _HASHED})
            conn.execute("UPDATE audit_log SET hash=? WHERE id=?", (digest, new_id))
            conn.execute(
                "INSERT OR REPLACE INTO audit_head(one, last_id, hash) VALUES (1, ?, ?)",
                (new_id, digest),
            )
        return self.get(new_id)

    def purge_images(self, retention_days: int, now: float | None = None) -> int:
        """Delete kept query images older than the retention period; returns how many."""
        folder = self.state_dir / QUERY_DIR
        if retention_days <= 0 or not folder.is_dir():
            return 0
        cutoff = (now or time.time()) - retention_days * 86400
        removed = 0
        for f in folder.iterdir():
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- reading --------------------------------------------------------------------------
    def get(self, record_id: int) -> AuditRecord:
        """One row by id; KeyError if absent."""
        rows = self.db.query("SELECT * FROM audit_log WHERE id=?", (record_id,))
        if not rows:
            raise KeyError(f"no audit record {record_id}")
        return _record(rows[0])

    def by_query(self, query_id: str) -> AuditRecord | None:
        """The row recording a query id."""
        rows = self.db.query("SELECT * FROM audit_log WHERE query_id=? ORDER BY id", (query_id,))
        return _record(rows[0]) if rows else None

    def list(
        self,
        limit: int = 50,
        offset: int = 0,
        sha256: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Rows newest first, optionally for one image hash or action."""
        where, args = [], []
        if sha256:
            where.append("image_sha256=?")
            args.append(sha256)
        if action:
            where.append("action=?")
            args.append(action)
        sql = "SELECT * FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        return [_record(r) for r in self.db.query(sql, [*args, limit, offset])]

    def count(self) -> int:
        """Number of rows."""
        return int(self.db.query("SELECT COUNT(*) FROM audit_log")[0][0])

    def image_path(self, record: AuditRecord) -> Path | None:
        """The kept query image of a row, if still within retention."""
        if not record.image_file:
            return None
        path = self.state_dir / record.image_file
        return path if path.is_file() else None

    def verify(self) -> VerifyReport:
        """Walk the chain from the start; report the first row that does not hold."""
        prev = GENESIS
        n = 0
        last_id = 0
        with self.db.lock:
            cursor = self.db.conn.execute("SELECT * FROM audit_log ORDER BY id")
            for r in cursor:
                n += 1
                fields = {k: r[k] for k in _HASHED}
                if r["prev_hash"] != prev:
                    return VerifyReport(False, n, r["id"], "link to previous row broken (deleted?)")
                if row_hash(fields) != r["hash"]:
                    return VerifyReport(False, n, r["id"], "row content does not match its hash")
                prev, last_id = r["hash"], r["id"]
            head = self.db.conn.execute("SELECT last_id, hash FROM audit_head").fetchone()
        if head is None and n == 0:
            return VerifyReport(True, 0)
        if head is None or head["last_id"] != last_id or head["hash"] != prev:
            return VerifyReport(False, n, last_id or None, "newest rows missing (log truncated)")
        return VerifyReport(True, n)
