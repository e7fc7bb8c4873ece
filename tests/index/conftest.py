"""The gallery backends the index tests run on: embedded, or Milvus + PostgreSQL on the real
servers of tests/servers.py (session fixtures ``milvus_uri`` and ``postgres_url``)."""

from __future__ import annotations

import uuid

import pytest

from index.backends import BackendSpec
from index.itemstore import StoreSpec
from tests.servers import drop_shared


@pytest.fixture()
def collection_name() -> str:
    """A fresh Milvus collection name per test."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["embedded", "distributed"])
def backends(request) -> dict:
    """Gallery.create keyword arguments: embedded FAISS + SQLite, or Milvus + PostgreSQL."""
    if request.param == "embedded":
        yield {}
        return
    name = f"g_{uuid.uuid4().hex[:12]}"
    vector = BackendSpec("milvus", request.getfixturevalue("milvus_uri"), name)
    url = request.getfixturevalue("postgres_url")
    store = StoreSpec("postgresql", url, name)
    yield {"vector_store": vector, "item_store": store}
    drop_shared(vector, store, url)
