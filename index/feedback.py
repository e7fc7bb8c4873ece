"""Analyst feedback on search results, kept for retraining.

Public API (small on purpose; the training code reads it)::

    store = FeedbackStore(state_dir / "state.sqlite")   # creates the table if missing
    fb = store.add(key_name="analyst 1", query_id="q_...", query_sha256="ab..",
                   query_image="feedback/ab...png", item_id="0123abcd...", verdict="wrong",
                   correct_label="glock_slide", added_item_id=None)
    rows: list[Feedback] = store.list(verdict=None, since=None, limit=None, offset=0)
    store.get(fb.id); store.count(); store.close()

A shared gallery keeps the same table in its PostgreSQL schema (``FeedbackStore(db)`` with an
open ``index.postgres.PortablePgDB``; the table comes from the service state's migrations).
Otherwise the service keeps it in the SQLite file ``<state_dir>/state.sqlite`` (``state_dir`` is the
gallery directory unless ``gunmatch serve --state DIR``), table ``feedback``. ``query_image``
is a path relative to ``state_dir``; the service copies the query there (``feedback/``) so the
audit log's retention purge never removes an image that feedback refers to.

Fields: ``verdict`` is ``'correct'`` (the result ``item_id`` is the right reference) or
``'wrong'``; ``correct_label`` optionally names the right label; ``added_item_id`` is set when
the analyst also added the query to the gallery as a new reference.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from index.sqlite import SqliteDB

VERDICTS = ("correct", "wrong")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at    TEXT NOT NULL,
    key_name      TEXT NOT NULL,
    query_id      TEXT NOT NULL,
    query_sha256  TEXT NOT NULL,
    query_image   TEXT NOT NULL DEFAULT '',
    item_id       TEXT NOT NULL DEFAULT '',
    verdict       TEXT NOT NULL CHECK (verdict IN ('correct', 'wrong')),
    correct_label TEXT,
    added_item_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback(created_at);
"""


@dataclass(frozen=True)
class Feedback:
    """One analyst judgement of one search result."""

    id: int
    created_at: str
    key_name: str
    query_id: str
    query_sha256: str
    query_image: str
    item_id: str
    verdict: str
    correct_label: str | None = None
    added_item_id: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


_COLUMNS = tuple(f.name for f in fields(Feedback))


class FeedbackStore:
    """Thread-safe feedback table in a SQLite file (shared with other state tables), or in
    an open shared database with the same interface."""

    def __init__(self, db: str | Path | Any) -> None:
        if hasattr(db, "dialect"):
            self.path, self._db, self._owned = None, db, False
        else:
            self.path = Path(db)
            self._db, self._owned = SqliteDB(self.path, _SCHEMA), True

    def close(self) -> None:
        """Close the database (when this store opened it)."""
        if self._owned:
            self._db.close()

    def add(
        self,
        key_name: str,
        query_id: str,
        query_sha256: str,
        query_image: str,
        item_id: str,
        verdict: str,
        correct_label: str | None = None,
        added_item_id: str | None = None,
    ) -> Feedback:
        """Store one judgement; raises ValueError for an unknown verdict."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._db.transaction() as conn:
            new_id = self._db.insert_id(
                conn,
                "INSERT INTO feedback(created_at, key_name, query_id, query_sha256, query_image,"
                " item_id, verdict, correct_label, added_item_id) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    created,
                    key_name,
                    query_id,
                    query_sha256,
                    query_image,
                    item_id,
                    verdict,
                    correct_label or None,
                    added_item_id or None,
                ),
            )
        found = self.get(new_id)
        if found is None:  # pragma: no cover - the row was just inserted
            raise RuntimeError("feedback row vanished after insert")
        return found

    def get(self, feedback_id: int) -> Feedback | None:
        """One row by id."""
        rows = self._db.query("SELECT * FROM feedback WHERE id=?", (feedback_id,))
        return Feedback(**{c: rows[0][c] for c in _COLUMNS}) if rows else None

    def list(
        self,
        verdict: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Feedback]:
        """Rows oldest first, optionally only one verdict or those created at/after ``since``."""
        where, args = [], []
        if verdict is not None:
            where.append("verdict=?")
            args.append(verdict)
        if since is not None:
            where.append("created_at>=?")
            args.append(since)
        sql = "SELECT * FROM feedback"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        rows = self._db.query(sql, args)
        return [Feedback(**{c: r[c] for c in _COLUMNS}) for r in rows]

    def count(self) -> int:
        """Number of rows."""
        return int(self._db.query("SELECT COUNT(*) FROM feedback")[0][0])
