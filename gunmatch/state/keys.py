"""API keys with roles, stored hashed: only the creator ever sees a key in clear."""

from __future__ import annotations

import hashlib
import secrets
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from index.sqlite import SqliteDB

# Each role can do everything the roles before it can.
ROLES = ("station", "analyst", "admin")
KEY_PREFIX = "gm_"
NAME_MAX = 100
# Control, format (bidi overrides such as U+202E), separator, surrogate and unassigned code points.
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}

KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('station', 'analyst', 'admin')),
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);
"""


class DuplicateKeyError(ValueError):
    """A key of that name already exists."""


class LastAdminError(ValueError):
    """Revoking this key would leave no active admin key."""


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never its secret)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {**asdict(self), "active": self.active}


def hash_key(secret: str) -> str:
    """SHA-256 of a key; keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    """A key name, stripped: 1..100 printable characters (no control or bidi characters)."""
    if not isinstance(name, str):
        raise ValueError("a key name must be text")
    name = name.strip()
    if not name:
        raise ValueError("a key needs a non-empty name")
    if len(name) > NAME_MAX:
        raise ValueError(f"a key name may have at most {NAME_MAX} characters")
    bad = [c for c in name if unicodedata.category(c) in _UNPRINTABLE]
    if bad:
        raise ValueError(
            f"a key name may hold printable characters only (found U+{ord(bad[0]):04X})"
        )
    return name


def printable(text: str) -> str:
    """``text`` safe for a terminal: unprintable characters as escapes (\\x1b, \\u202e)."""
    return "".join(
        c if unicodedata.category(c) not in _UNPRINTABLE else c.encode("unicode_escape").decode()
        for c in text
    )


def check_role(role: str) -> str:
    """Validate a role name."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def role_allows(role: str, required: str) -> bool:
    """True if ``role`` has at least the rights of ``required``."""
    return ROLES.index(check_role(role)) >= ROLES.index(check_role(required))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def key_from_row(r) -> ApiKey:
    """An ApiKey from an ``api_keys`` row."""
    return ApiKey(
        id=r["id"],
        name=r["name"],
        role=r["role"],
        prefix=r["prefix"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
    )


def state_db(source: str | Path | Any, schema: str) -> tuple[Any, bool]:
    """(database, owned): a SQLite file opened with ``schema`` (today's embedded state), or
    an already open database with the same interface (``index.postgres.PortablePgDB``, whose
    tables come from migrations) used as it is and left to its opener to close."""
    if hasattr(source, "dialect"):
        return source, False
    return SqliteDB(source, schema), True


class KeyStore:
    """Create, list, revoke and check API keys.

    Every check reads the database (no cache), so a key revoked through one process is
    refused by every other process sharing the database from its next request on.
    """

    def __init__(self, db: str | Path | Any) -> None:
        """``db``: the state SQLite file, or an open shared database (see ``state_db``)."""
        self.db, self._owned = state_db(db, KEYS_SCHEMA)

    def close(self) -> None:
        """Close the database (when this store opened it)."""
        if self._owned:
            self.db.close()

    def create(self, name: str, role: str, replace: bool = False) -> tuple[ApiKey, str]:
        """A new key: its record and the secret (shown once, stored only hashed).

        With ``replace`` an existing key of that name is deleted (its secret stops working).
        """
        name = check_name(name)
        check_role(role)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction() as conn:
            if replace:
                conn.execute("DELETE FROM api_keys WHERE name=?", (name,))
            if conn.execute("SELECT 1 FROM api_keys WHERE name=?", (name,)).fetchone():
                raise DuplicateKeyError(f"a key named {printable(name)!r} already exists")
            conn.execute(
                "INSERT INTO api_keys(name, role, key_hash, prefix, created_at) VALUES (?,?,?,?,?)",
                (name, role, hash_key(secret), secret[:8], _now()),
            )
        return self.get(name), secret

    def get(self, name: str) -> ApiKey:
        """A key's record by name; KeyError if unknown."""
        rows = self.db.query("SELECT * FROM api_keys WHERE name=?", (name,))
        if not rows:
            raise KeyError(f"no key named {printable(name)!r}")
        return key_from_row(rows[0])

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """All keys, oldest first."""
        sql = "SELECT * FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return [key_from_row(r) for r in self.db.query(sql + " ORDER BY id")]

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key by name (idempotent); KeyError if unknown, LastAdminError for the
        last active admin key (nobody could manage keys through the service any more)."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT role FROM api_keys WHERE name=? AND revoked_at IS NULL", (name,)
            ).fetchone()
            if row is not None and row["role"] == "admin":
                admins = conn.execute(
                    "SELECT COUNT(*) FROM api_keys WHERE role='admin' AND revoked_at IS NULL"
                ).fetchone()[0]
                if admins <= 1:
                    raise LastAdminError(
                        f"{printable(name)!r} is the last active admin key; create another "
                        "admin key before revoking it"
                    )
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (_now(), name),
            )
            if (
                cur.rowcount == 0
                and not conn.execute("SELECT 1 FROM api_keys WHERE name=?", (name,)).fetchone()
            ):
                raise KeyError(f"no key named {printable(name)!r}")
        return self.get(name)

    def authenticate(self, secret: str | None) -> ApiKey | None:
        """The active key matching ``secret``, or None."""
        if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        rows = self.db.query(
            "SELECT * FROM api_keys WHERE key_hash=? AND revoked_at IS NULL", (hash_key(secret),)
        )
        if not rows:
            return None
        key = key_from_row(rows[0])
        # Coarse last-use stamp: at most one write per key per minute.
        now = _now()
        if (key.last_used_at or "")[:16] != now[:16]:
            with self.db.transaction() as conn:
                conn.execute("UPDATE api_keys SET last_used_at=? WHERE id=?", (now, key.id))
        return key
