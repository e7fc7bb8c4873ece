"""Real servers for tests (launched by benchmarks.servers): the session fixtures
``milvus_uri`` and ``postgres_url``; a test gallery put on either backend (``gallery_on``,
``moved_to``; ``imported`` into PostgreSQL + Milvus), and ``drop_shared`` /
``drop_gallery_share`` to delete a test gallery's share."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def drop_gallery_share(gallery_dir: Path, url: str = "") -> None:
    """Delete the Milvus collection and PostgreSQL schema a gallery's manifest names (nothing
    for an embedded gallery)."""
    from index.backends import BackendSpec
    from index.itemstore import StoreSpec

    manifest = json.loads((Path(gallery_dir) / "manifest.json").read_text())
    vector, store = BackendSpec.from_manifest(manifest), StoreSpec.from_manifest(manifest)
    drop_shared(vector if vector.backend == "milvus" else None,
                store if store.backend == "postgresql" else None, url)  # fmt: skip


@contextmanager
def imported(source: Path, dst: Path, request) -> Iterator[Path]:
    """The (closed) gallery at ``source`` imported into its own PostgreSQL schema + Milvus
    collection, gallery directory ``dst``, with an empty service state, as ``gunmatch gallery
    import`` makes one; dropped on exit. ``request`` reaches the server fixtures."""
    from gunmatch.database import create_shared_state
    from index.backends import BackendSpec
    from index.itemstore import StoreSpec
    from index.transfer import copy_gallery

    url = request.getfixturevalue("postgres_url")
    name = f"t_{uuid.uuid4().hex[:12]}"
    vector = BackendSpec("milvus", request.getfixturevalue("milvus_uri"), name)
    store = StoreSpec("postgresql", url, name)
    try:
        report = copy_gallery(source, dst, vector_store=vector, item_store=store)
        assert report.ok, report.to_dict()
        create_shared_state(dst)
        yield dst
    finally:
        drop_shared(vector, store, url)


@contextmanager
def gallery_on(backend: str, source: Path, dst: Path, request) -> Iterator[Path]:
    """A private copy at ``dst`` of the (closed) gallery at ``source`` on ``backend``:
    ``embedded``, its directory copied; ``shared``, ``imported``."""
    if backend == "shared":
        with imported(source, dst, request) as gal:
            yield gal
        return
    shutil.copytree(source, dst, ignore=shutil.ignore_patterns(".lock", "*.lock"))
    yield dst


@contextmanager
def moved_to(backend: str, gallery: Path, request) -> Iterator[Path]:
    """A test's own embedded gallery on ``backend``: ``embedded``, itself; ``shared``,
    ``imported`` beside it (``<name>-shared``)."""
    if backend == "shared":
        with imported(gallery, gallery.with_name(f"{gallery.name}-shared"), request) as gal:
            yield gal
        return
    yield gallery


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
