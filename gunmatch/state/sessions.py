"""Web sign-in sessions: random tokens stored hashed, expiring, listed and revocable.

A session belongs to an API key: it works only while the key is active, so revoking (or
replacing) the key ends its sessions too. The browser holds the token, never the key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gunmatch.state.keys import KEYS_SCHEMA, ApiKey, key_from_row, state_db

TOKEN_PREFIX = "gms_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT NOT NULL UNIQUE,
    key_id      INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX IF NOT EXISTS sessions_key ON sessions(key_id);
"""


@dataclass(frozen=True)
class Session:
    """A session's record (never its token)."""

    id: int
    key_id: int
    key_name: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None

    def active(self, now: float | None = None) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires_at > (now or time.time())

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {**asdict(self), "active": self.active()}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    """Create, check, list and revoke sessions in the state database."""

    def __init__(self, db: str | Path | Any) -> None:
        """``db``: the state SQLite file, or an open shared database (``keys.state_db``)."""
        self.db, self._owned = state_db(db, KEYS_SCHEMA + _SCHEMA)

    def close(self) -> None:
        """Close the database (when this store opened it)."""
        if self._owned:
            self.db.close()

    def create(self, key: ApiKey, ttl_s: float) -> tuple[Session, str]:
        """A new session for ``key``: its record and the token (kept only by the browser)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self.db.transaction() as conn:
            sid = self.db.insert_id(
                conn,
                "INSERT INTO sessions(token_hash, key_id, created_at, expires_at) VALUES (?,?,?,?)",
                (_hash(token), key.id, now, now + ttl_s),
            )
        return self.get(sid), token

    def get(self, session_id: int) -> Session:
        """A session by id; KeyError if unknown."""
        rows = self.db.query(
            "SELECT s.*, k.name AS key_name FROM sessions s LEFT JOIN api_keys k"
            " ON k.id = s.key_id WHERE s.id=?",
            (session_id,),
        )
        if not rows:
            raise KeyError(f"no session {session_id}")
        return _session(rows[0])

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key behind an unexpired, unrevoked session token, or None."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        rows = self.db.query(
            "SELECT k.* FROM sessions s JOIN api_keys k ON k.id = s.key_id"
            " WHERE s.token_hash=? AND s.revoked_at IS NULL AND s.expires_at > ?"
            " AND k.revoked_at IS NULL",
            (_hash(token), time.time()),
        )
        return key_from_row(rows[0]) if rows else None

    def list(self, active_only: bool = False) -> list[Session]:
        """Sessions, oldest first (with their key's name)."""
        rows = self.db.query(
            "SELECT s.*, k.name AS key_name FROM sessions s LEFT JOIN api_keys k"
            " ON k.id = s.key_id ORDER BY s.id"
        )
        out = [_session(r) for r in rows]
        return [s for s in out if s.active()] if active_only else out

    def revoke_token(self, token: str) -> bool:
        """End the session holding ``token`` (sign-out); True if one was active."""
        return self._revoke("token_hash=?", (_hash(token),)) > 0

    def revoke(self, session_id: int) -> Session:
        """End a session by id (idempotent); KeyError if unknown."""
        self.get(session_id)
        self._revoke("id=?", (session_id,))
        return self.get(session_id)

    def revoke_key(self, key_id: int) -> int:
        """End every session of a key; returns how many were active."""
        return self._revoke("key_id=?", (key_id,))

    def purge_expired(self, older_than_s: float = 86400.0) -> int:
        """Delete sessions expired or revoked more than ``older_than_s`` ago."""
        cutoff = time.time() - older_than_s
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?", (cutoff, cutoff)
            )
            return cur.rowcount

    def _revoke(self, where: str, args: tuple) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                f"UPDATE sessions SET revoked_at=? WHERE {where} AND revoked_at IS NULL",
                (time.time(), *args),
            )
            return cur.rowcount


def _session(r) -> Session:
    return Session(
        id=r["id"],
        key_id=r["key_id"],
        key_name=r["key_name"] or "",
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
    )
