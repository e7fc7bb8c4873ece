"""Session-wide real servers for the vector and item store backends (see tests/servers.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.servers import milvus_lite_command, start_milvus, stop


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


@pytest.fixture()
def collection_name() -> str:
    """A fresh Milvus collection name per test."""
    return f"t_{uuid.uuid4().hex[:12]}"
