"""Real servers for tests (launched by benchmarks.servers): the session fixtures
``milvus_uri`` and ``postgres_url``, and ``drop_shared`` to delete a test gallery's share."""

from __future__ import annotations

import pytest

from benchmarks.servers import (
    milvus_lite_command,
    pg_bin,
    start_milvus,
    start_postgres,
    stop,
    stop_postgres,
)


def drop_shared(vector, store, url: str = "") -> None:
    """Delete a test gallery's Milvus collection and PostgreSQL schema."""
    if vector is not None:
        from index.backends.milvus_backend import connect

        client = connect(vector.uri)
        if client.has_collection(vector.collection):
            client.drop_collection(vector.collection)
        client.close()
    if store is not None:
        import psycopg

        with psycopg.connect(url or store.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {store.schema} CASCADE")


# -- session fixtures (imported by tests/conftest.py) ----------------------------------------
@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> str:
    """A milvus-lite server process on 127.0.0.1 for the whole session; its pymilvus URI."""
    if milvus_lite_command() is None:
        pytest.skip("milvus-lite is not installed: pip install -e '.[dev]' provides it")
    pytest.importorskip("pymilvus", reason="pymilvus is not installed")
    base = tmp_path_factory.mktemp("milvus")
    proc, uri = start_milvus(base / "data")
    yield uri
    stop(proc)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A private PostgreSQL cluster (initdb + pg_ctl) on a Unix socket for the session."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed: 'make test' installs it as root (apt)")
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    base, url = start_postgres()
    yield url
    stop_postgres(base)
