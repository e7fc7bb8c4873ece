"""Where the service state lives, and opening it: one interface over two stores.

``files`` (the embedded default, unchanged): ``<state_dir>/state.sqlite`` beside the gallery,
one machine. ``postgresql``: when the gallery keeps its items in PostgreSQL (a shared
gallery), its keys, sessions, audit chain, feedback and reload generation live in the same
schema (component ``state`` of ``gunmatch.state.pg_schema``), so every replica serving the
gallery sees one set of keys and appends to one chain. Either way the stores are the same
classes (``KeyStore``, ``SessionStore``, ``AuditLog``, ``FeedbackStore``) over a database
with one interface (``index.sqlite.SqliteDB`` or ``index.postgres.PortablePgDB``); kept
query and feedback images stay files under ``state_dir`` (on a shared gallery, a volume
every replica mounts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gunmatch.state import pg_schema
from gunmatch.state.audit import AuditLog
from gunmatch.state.keys import KeyStore
from gunmatch.state.secret import AuditKeyring
from gunmatch.state.sessions import SessionStore
from index.feedback import FeedbackStore
from index.itemstore import StoreSpec
from index.postgres import DatabaseError, PortablePgDB, redact_url

STATE_DB = "state.sqlite"
RELOAD_KEY = "reload_generation"


@dataclass(frozen=True)
class StateLocation:
    """``backend`` (files | postgresql), the directory for kept images, and for PostgreSQL
    the database URL and schema."""

    backend: str
    state_dir: Path
    url: str = ""
    schema: str = ""

    @property
    def shared(self) -> bool:
        """Kept in a database every replica reaches."""
        return self.backend == "postgresql"

    def describe(self) -> str:
        """Where, for messages (no password)."""
        if self.shared:
            return f"PostgreSQL {redact_url(self.url)} schema {self.schema}"
        return str(self.state_dir / STATE_DB)


def state_location(gallery_dir: str | Path, state_dir: str | Path | None = None) -> StateLocation:
    """The state of the gallery at ``gallery_dir``: in its PostgreSQL schema when the
    gallery's manifest records a ``postgresql`` item store, else in
    ``<state_dir or gallery_dir>/state.sqlite``."""
    gallery_dir = Path(gallery_dir)
    files_dir = Path(state_dir) if state_dir else gallery_dir
    mpath = gallery_dir / "manifest.json"
    spec = StoreSpec.from_manifest(json.loads(mpath.read_text())) if mpath.is_file() else None
    return location_for_store(spec, files_dir)


def location_for_store(item_store: StoreSpec | None, state_dir: str | Path) -> StateLocation:
    """Where the state of a gallery keeping its items in ``item_store`` lives (also before
    the gallery exists): its PostgreSQL schema, else ``<state_dir>/state.sqlite``."""
    if item_store is not None and item_store.backend == "postgresql":
        return StateLocation("postgresql", Path(state_dir), item_store.url, item_store.schema)
    return StateLocation("files", Path(state_dir))


def open_state_db(location: StateLocation, max_size: int = 4) -> PortablePgDB:
    """The shared state's database, refused unless its migrations are all applied. A request
    holds a connection for one or two short statements, so the pool is half the gallery's."""
    db = PortablePgDB(location.url, location.schema, max_size=max_size)
    try:
        with db.db.connection() as conn:
            have = pg_schema.version(conn, location.schema)
    except BaseException:
        db.close()
        raise
    if have != pg_schema.LATEST:
        db.close()
        what = "missing" if have == 0 else f"at version {have}"
        raise DatabaseError(
            f"the service state in schema {location.schema} is {what}; this gunmatch needs "
            f"version {pg_schema.LATEST}: run 'gunmatch db upgrade'"
        )
    return db


class ServiceState:
    """Keys, sessions, audit log and feedback of one gallery, opened on first use."""

    def __init__(self, location: StateLocation, keyring: AuditKeyring | None = None) -> None:
        """``keyring`` signs and checks the audit chain (needed only for ``audit``)."""
        self.location = location
        self.keyring = keyring
        location.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db: Any = open_state_db(location) if location.shared else None
        self._opened: list[Any] = []

    def _source(self) -> Any:
        return self.db if self.db is not None else self.location.state_dir / STATE_DB

    def _keep(self, store: Any) -> Any:
        self._opened.append(store)
        return store

    @cached_property
    def keys(self) -> KeyStore:
        """API keys."""
        return self._keep(KeyStore(self._source()))

    @cached_property
    def sessions(self) -> SessionStore:
        """Web sign-in sessions."""
        return self._keep(SessionStore(self._source()))

    @cached_property
    def audit(self) -> AuditLog:
        """The keyed audit chain."""
        if self.keyring is None:
            raise ValueError("the audit log needs the audit secret (keyring)")
        return self._keep(AuditLog(self.location.state_dir, self.keyring, STATE_DB, self.db))

    @cached_property
    def feedback(self) -> FeedbackStore:
        """Analyst feedback."""
        return self._keep(FeedbackStore(self._source()))

    def reload_generation(self) -> int | None:
        """The shared reload generation (None for files: one process, nothing to watch)."""
        if self.db is None:
            return None
        rows = self.db.query("SELECT value FROM service_meta WHERE key=?", (RELOAD_KEY,))
        return int(rows[0][0]) if rows else 0

    def request_reload(self) -> int | None:
        """Bump the reload generation: every replica watching it reloads its model and
        calibration. Returns the new generation (None for files)."""
        if self.db is None:
            return None
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE service_meta SET value = value + 1 WHERE key=? RETURNING value",
                (RELOAD_KEY,),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close every store opened, then the shared database."""
        for store in self._opened:
            store.close()
        self._opened.clear()
        if self.db is not None:
            self.db.close()
            self.db = None


def open_state(
    gallery_dir: str | Path,
    state_dir: str | Path | None = None,
    keyring: AuditKeyring | None = None,
) -> ServiceState:
    """The state of a gallery, wherever ``state_location`` says it lives."""
    return ServiceState(state_location(gallery_dir, state_dir), keyring)
