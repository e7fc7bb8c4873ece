"""One SQLite connection with WAL, full sync and immediate transactions, shared by all stores."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteDB:
    """Thread-safe SQLite connection for one group of tables.

    ``index.postgres.PortablePgDB`` offers the same interface on PostgreSQL (``dialect``,
    ``lock_clause``, ``insert_id``, ``snapshot``) for stores kept in either engine.
    """

    dialect = "sqlite"
    lock_clause = ""  # BEGIN IMMEDIATE already holds the database's write lock

    def __init__(self, path: str | Path, schema: str, foreign_keys: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only: SQLite gives the -wal and -shm files the database file's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees one snapshot (WAL)."""
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def insert_id(self, conn: sqlite3.Connection, sql: str, args: tuple | list = ()) -> int:
        """Run an INSERT inside a transaction; the new row's id."""
        return int(conn.execute(sql, args).lastrowid)

    def query(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        """Run a read query and return all rows."""
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()
