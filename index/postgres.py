"""PostgreSQL plumbing shared by every table group: a connection pool and versioned migrations.

Each group of tables (a gallery's items, later the service state) lives in its own schema and
records the migrations applied to it in ``<schema>.schema_migrations`` under a component name.
``migrate`` applies the missing ones in order inside one transaction holding an advisory lock,
so two processes upgrading at once apply each migration exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    component  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Migration:
    """One schema change: a version (1, 2, ...), a name, and its SQL (``{schema}`` filled in)."""

    version: int
    name: str
    sql: str


class DatabaseError(RuntimeError):
    """PostgreSQL cannot be reached or its schema is not what this gunmatch expects."""


class DataValueError(ValueError):
    """A value PostgreSQL cannot store or compare (its "data exception" class, e.g. text
    holding a NUL character, which SQLite takes): the caller's input is at fault."""


def check_identifier(name: str) -> str:
    """A safe, unquoted PostgreSQL identifier (lower case letters, digits, underscores)."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid PostgreSQL identifier {name!r}")
    return name


def redact_url(url: str) -> str:
    """The URL without its password (what a manifest may record)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise DatabaseError(
            "PostgreSQL needs psycopg and psycopg_pool: pip install 'gunmatch[distributed]'"
        ) from e
    return psycopg, psycopg_pool


class PgDB:
    """A connection pool whose connections search ``schema`` first."""

    def __init__(self, url: str, schema: str, min_size: int = 1, max_size: int = 8) -> None:
        psycopg, psycopg_pool = _psycopg()
        self.url, self.schema = url, check_identifier(schema)
        self.errors = psycopg.Error
        self._data_error = psycopg.DataError
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"options": f"-c search_path={schema},public", "autocommit": True},
            open=False,
            name=f"gunmatch-{schema}",
        )
        try:
            self.pool.open(wait=True, timeout=30)
        except psycopg_pool.PoolTimeout as e:
            self.pool.close()
            raise DatabaseError(f"cannot connect to PostgreSQL at {redact_url(url)}: {e}") from e

    @contextmanager
    def connection(self) -> Iterator:
        """A pooled connection (autocommit) for reads or explicit transactions; a value the
        database refuses raises ``DataValueError``."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except self._data_error as e:
            raise DataValueError(f"a value PostgreSQL cannot take: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator:
        """BEGIN ... COMMIT on one pooled connection, rolled back on any exception."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        """Run a read query and return all rows."""
        with self.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()


def applied_version(conn, schema: str, component: str) -> int:
    """The highest migration applied to ``schema`` for ``component`` (0: none)."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{check_identifier(schema)}.schema_migrations",)
    ).fetchone()[0]
    if not exists:
        return 0
    row = conn.execute(
        f"SELECT max(version) FROM {schema}.schema_migrations WHERE component = %s", (component,)
    ).fetchone()
    return int(row[0] or 0)


def migrate(conn, schema: str, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the missing migrations to ``schema`` in one transaction; returns their versions."""
    schema = check_identifier(schema)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{component} migrations must be numbered 1..n, got {versions}")
    done: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate:{schema}",))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(MIGRATIONS_TABLE.format(schema=schema))
        current = applied_version(conn, schema, component)
        if current > len(migrations):
            raise DatabaseError(
                f"schema {schema} is at {component} version {current}, newer than this "
                f"gunmatch knows ({len(migrations)}); upgrade gunmatch"
            )
        for m in migrations[current:]:
            conn.execute(m.sql.format(schema=schema))
            conn.execute(
                f"INSERT INTO {schema}.schema_migrations (component, version, name) "
                "VALUES (%s, %s, %s)",
                (component, m.version, m.name),
            )
            done.append(m.version)
    return done


def schemas_with(conn, component: str) -> list[str]:
    """Schemas in the database that hold migrations of ``component``."""
    rows = conn.execute(
        "SELECT table_schema FROM information_schema.tables "
        "WHERE table_name = 'schema_migrations' ORDER BY table_schema"
    ).fetchall()
    found = []
    for (schema,) in rows:
        if not _IDENT.match(schema):
            continue
        n = conn.execute(
            f"SELECT count(*) FROM {schema}.schema_migrations WHERE component = %s", (component,)
        ).fetchone()[0]
        if n:
            found.append(schema)
    return found


class PgRow(tuple):
    """A row readable by position or by column name, as ``sqlite3.Row`` is."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence, index: dict[str, int]) -> PgRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """Column names, in order."""
        return list(self._index)


def _pg_row(cursor):
    names = [c.name for c in cursor.description or ()]
    index = {n: i for i, n in enumerate(names)}
    return lambda values: PgRow(values, index)


class _PortableConn:
    """A psycopg connection taking SQLite's ``?`` placeholders and returning ``PgRow`` rows."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence = ()):
        cur = self._conn.cursor(row_factory=_pg_row)
        return cur.execute(sql.replace("?", "%s"), list(args))


class PortablePgDB:
    """A schema of tables written for both engines, with ``index.sqlite.SqliteDB``'s interface.

    The SQL of such stores uses ``?`` placeholders and reads rows by name or position; what
    differs between the engines is here: how an insert reports its id, the row lock a
    serialising read takes (SQLite's ``BEGIN IMMEDIATE`` already holds the whole file), and a
    read snapshot.
    """

    dialect = "postgresql"
    lock_clause = " FOR UPDATE"

    def __init__(self, url: str, schema: str, min_size: int = 1, max_size: int = 8) -> None:
        self.db = PgDB(url, schema, min_size=min_size, max_size=max_size)
        self.url, self.schema = url, schema

    @contextmanager
    def transaction(self) -> Iterator[_PortableConn]:
        """BEGIN ... COMMIT (read committed), rolled back on any exception."""
        with self.db.transaction() as conn:
            yield _PortableConn(conn)

    @contextmanager
    def snapshot(self) -> Iterator[_PortableConn]:
        """A read-only transaction seeing one consistent snapshot (repeatable read)."""
        with self.db.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _PortableConn(conn)

    def query(self, sql: str, args: Sequence = ()) -> list[PgRow]:
        """Run a read query and return all rows."""
        with self.db.connection() as conn:
            return _PortableConn(conn).execute(sql, args).fetchall()

    def insert_id(self, conn: _PortableConn, sql: str, args: Sequence = ()) -> int:
        """Run an INSERT into a table with an ``id`` column; the new row's id."""
        return int(conn.execute(sql + " RETURNING id", args).fetchone()[0])

    def close(self) -> None:
        """Close every pooled connection."""
        self.db.close()
