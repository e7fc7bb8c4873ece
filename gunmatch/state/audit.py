"""Keyed hash chain of searches, comparisons and gallery changes.

Each row stores an HMAC-SHA256, under a secret kept outside the gallery (``secret.py``), of
its canonical content and the previous row's MAC: editing a row breaks its MAC, deleting one
breaks the next row's link, and without the secret nobody who can merely write the database
can recompute the chain behind an edit. The newest row's id and MAC are also kept in
``audit_head``. Deleting rows at the end and rewriting the head cannot be told from a shorter
log by the database alone: a *checkpoint* (the head and its MAC, filed elsewhere) can, and
``verify(checkpoint)`` checks the chain still reaches it unchanged. Rows written before the
chain was keyed (``key_id`` '') keep their plain SHA-256 links and may only precede keyed rows.
Query images are kept under ``queries/`` (0600) and purged after the retention period; rows
themselves are never purged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gunmatch.state.secret import AuditKeyring
from index.sqlite import SqliteDB

GENESIS = "0" * 64
QUERY_DIR = "queries"
CHECKPOINT_FORMAT = "gunmatch-audit-checkpoint/1"
VERIFY_PAGE = 5000

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
_ADD_KEY_ID = "ALTER TABLE audit_log ADD COLUMN key_id TEXT NOT NULL DEFAULT ''"

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
_KEYED = (*_HASHED, "key_id")


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
    key_id: str = ""

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


def _canonical(values: list) -> bytes:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def row_hash(fields: dict[str, Any]) -> str:
    """Unkeyed SHA-256 of a row written before the chain was keyed (prev_hash included)."""
    return hashlib.sha256(_canonical([fields[k] for k in _HASHED])).hexdigest()


def row_mac(fields: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 of a row's canonical content (prev_hash and key_id included)."""
    return hmac.new(secret, _canonical([fields[k] for k in _KEYED]), hashlib.sha256).hexdigest()


def checkpoint_mac(cp: dict[str, Any], secret: bytes) -> str:
    """The MAC a checkpoint carries, over everything else in it."""
    values = [cp["format"], cp["last_id"], cp["hash"], cp["rows"], cp["ts"], cp["key_id"]]
    return hmac.new(secret, _canonical(values), hashlib.sha256).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def audit_tables(path: str | Path) -> SqliteDB:
    """The SQLite file ``path`` with its audit tables, created (or given ``key_id``) if missing."""
    db = SqliteDB(path, _SCHEMA)
    with db.lock:
        cols = {r["name"] for r in db.conn.execute("PRAGMA table_info(audit_log)")}
        if "key_id" not in cols:
            db.conn.execute(_ADD_KEY_ID)
    return db


def _record(r) -> AuditRecord:
    return AuditRecord(**{k: r[k] for k in (*_KEYED, "hash")})


class AuditLog:
    """Append-only, HMAC-chained log in ``<state_dir>/state.sqlite`` (or a shared database).

    Appends are serialised by the database: SQLite's ``BEGIN IMMEDIATE`` holds the file's write
    lock, PostgreSQL's ``SELECT ... FOR UPDATE`` on the chain head row makes every other
    appender (in any process) wait, then read the head this one wrote.
    """

    def __init__(
        self,
        state_dir: str | Path,
        keyring: AuditKeyring,
        db_name: str = "state.sqlite",
        db: Any = None,
    ) -> None:
        """``db``: an open shared database (``index.postgres.PortablePgDB``) holding the
        tables; without it, ``<state_dir>/<db_name>``. Query images stay under ``state_dir``."""
        self.state_dir = Path(state_dir)
        self.keyring = keyring
        self._owned = db is None
        if db is not None:
            self.db = db
            return
        self.db = audit_tables(self.state_dir / db_name)

    def close(self) -> None:
        """Close the database (when this log opened it)."""
        if self._owned:
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
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
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
        """Add one row, chained to the newest one and signed, in a single transaction."""
        results_text = json.dumps(results, ensure_ascii=False, sort_keys=True)
        key_id = self.keyring.current_id
        with self.db.transaction() as conn:
            head = conn.execute(
                "SELECT last_id, hash FROM audit_head WHERE one=1" + self.db.lock_clause
            ).fetchone()
            prev = head["hash"] if head else GENESIS
            new_id = self.db.insert_id(
                conn,
                "INSERT INTO audit_log(ts, action, key_name, query_id, image_sha256, image_file,"
                " model_id, decision, results, prev_hash, hash, key_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,'',?)",
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
                    key_id,
                ),
            )
            row = conn.execute("SELECT * FROM audit_log WHERE id=?", (new_id,)).fetchone()
            digest = row_mac({k: row[k] for k in _KEYED}, self.keyring.current)
            conn.execute("UPDATE audit_log SET hash=? WHERE id=?", (digest, new_id))
            moved = conn.execute(
                "UPDATE audit_head SET last_id=?, hash=? WHERE one=1", (new_id, digest)
            ).rowcount
            if not moved:
                conn.execute(
                    "INSERT INTO audit_head(one, last_id, hash) VALUES (1, ?, ?)", (new_id, digest)
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

    def checkpoint(self) -> dict[str, Any]:
        """The newest row's id and MAC, signed: file it elsewhere, check it with ``verify``."""
        with self.db.snapshot() as conn:
            head = conn.execute("SELECT last_id, hash FROM audit_head").fetchone()
            rows = int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])
        cp = {
            "format": CHECKPOINT_FORMAT,
            "last_id": int(head["last_id"]) if head else 0,
            "hash": head["hash"] if head else GENESIS,
            "rows": rows,
            "ts": _now(),
            "key_id": self.keyring.current_id,
        }
        cp["mac"] = checkpoint_mac(cp, self.keyring.current)
        return cp

    def _check_checkpoint(self, cp: dict[str, Any]) -> str:
        """'' when the checkpoint is genuine (signed by a secret of ours), else the problem."""
        try:
            secret = self.keyring.get(str(cp["key_id"]))
            if cp.get("format") != CHECKPOINT_FORMAT:
                return "not a gunmatch audit checkpoint"
            if secret is None:
                return f"checkpoint signed by an unknown audit secret {cp['key_id']}"
            if not hmac.compare_digest(checkpoint_mac(cp, secret), str(cp.get("mac", ""))):
                return "checkpoint MAC does not match (forged or edited checkpoint)"
        except (KeyError, TypeError):
            return "checkpoint lacks a field"
        return ""

    def _row_problem(self, r, prev: str, keyed_seen: bool) -> str:
        fields = {k: r[k] for k in _KEYED}
        if r["prev_hash"] != prev:
            return "link to previous row broken (deleted or re-chained?)"
        if not r["key_id"]:
            if keyed_seen:
                return "unsigned row after signed rows (chain downgraded)"
            return "" if row_hash(fields) == r["hash"] else "row content does not match its hash"
        secret = self.keyring.get(r["key_id"])
        if secret is None:
            return f"row signed by an unknown audit secret {r['key_id']}"
        if not hmac.compare_digest(row_mac(fields, secret), r["hash"]):
            return "row content does not match its MAC (edited or re-chained)"
        return ""

    def verify(self, checkpoint: dict[str, Any] | None = None) -> VerifyReport:
        """Walk the chain from the start; report the first row that does not hold.

        With a ``checkpoint`` (from ``checkpoint()``), also require that its row is still
        there with the same MAC: truncation or re-chaining behind it is detected.
        """
        if checkpoint is not None:
            problem = self._check_checkpoint(checkpoint)
            if problem:
                return VerifyReport(False, 0, None, problem)
        cp_id = int(checkpoint["last_id"]) if checkpoint else 0
        prev, n, last_id, keyed_seen, cp_seen = GENESIS, 0, 0, False, cp_id == 0
        # One snapshot for the rows and the head: appends meanwhile (other replicas) are not
        # mistaken for a truncation. Pages keep memory flat on long logs.
        with self.db.snapshot() as conn:
            after = -1
            while True:
                page = conn.execute(
                    "SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?",
                    (after, VERIFY_PAGE),
                ).fetchall()
                for r in page:
                    n += 1
                    problem = self._row_problem(r, prev, keyed_seen)
                    if problem:
                        return VerifyReport(False, n, r["id"], problem)
                    if r["id"] == cp_id:
                        if r["hash"] != checkpoint["hash"]:
                            return VerifyReport(
                                False, n, r["id"], "row differs from the checkpoint (re-chained)"
                            )
                        cp_seen = True
                    keyed_seen = keyed_seen or bool(r["key_id"])
                    prev, last_id = r["hash"], r["id"]
                if len(page) < VERIFY_PAGE:
                    break
                after = page[-1]["id"]
            head = conn.execute("SELECT last_id, hash FROM audit_head").fetchone()
        if not cp_seen:
            return VerifyReport(
                False, n, cp_id, "the checkpoint's row is missing (log truncated behind it)"
            )
        if head is None and n == 0:
            return VerifyReport(True, 0)
        if head is None or head["last_id"] != last_id or head["hash"] != prev:
            return VerifyReport(False, n, last_id or None, "newest rows missing (log truncated)")
        return VerifyReport(True, n)
