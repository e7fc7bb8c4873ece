"""Fixtures for the service tests: one tiny gallery per session, one app per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import ServiceConfig, create_app
from gunmatch.indexing import build, gallery_writer, scan_source
from gunmatch.service import create_engine
from gunmatch.settings import get_settings
from gunmatch.state import KeyStore, state_db_path
from tests.api.helpers import LABELS, draw, serve


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SRC/<label>/<n>.png: 4 labels x 3 drawings."""
    src = tmp_path_factory.mktemp("src")
    for label, (_, _, kind) in LABELS.items():
        (src / label).mkdir()
        for v in range(3):
            draw(kind, v).save(src / label / f"{v}.png")
    return src


@pytest.fixture(scope="session")
def built_gallery(tmp_path_factory: pytest.TempPathFactory, source_dir: Path) -> Path:
    """A gallery of the 12 drawings, built once with the real default model."""

    root = tmp_path_factory.mktemp("gal") / "gallery"
    engine = create_engine(root, threads=1)
    records = scan_source(source_dir, threat_labels=[k for k, v in LABELS.items() if v[0]])
    for r in records:
        r.category = LABELS[r.label][1]
    build(records, engine.embedder, gallery_writer(engine.gallery, engine.embedder.model_id),
          batch_size=16, workers=1, progress=False)  # fmt: skip
    engine.close()
    return root


@pytest.fixture(scope="module")
def gallery_copy(tmp_path_factory: pytest.TempPathFactory, built_gallery: Path) -> Path:
    """A private copy of the gallery for one test module (tests may change it)."""
    dst = tmp_path_factory.mktemp("galcopy") / "gallery"
    shutil.copytree(built_gallery, dst)
    return dst


@pytest.fixture(scope="module")
def keys(gallery_copy: Path) -> dict[str, str]:
    """One key per role, created in the gallery's state database."""

    store = KeyStore(state_db_path(gallery_copy))
    out = {role: store.create(f"{role} key", role)[1] for role in ("station", "analyst", "admin")}
    revoked = store.create("old key", "admin")[1]
    store.revoke("old key")
    out["revoked"] = revoked
    store.close()
    return out


@pytest.fixture(scope="module")
def client(gallery_copy: Path, keys: dict[str, str]) -> Iterator:
    """A TestClient over the real app (real model, threads=1, small limits)."""


    settings = get_settings(
        threads=1, max_upload_bytes=2_000_000, max_pixels=4_000_000, max_batch_images=4,
        queue_size=2, default_k=5,
    )  # fmt: skip
    app = create_app(ServiceConfig(gallery_dir=gallery_copy, settings=settings))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def mixed_client(gallery_copy: Path, keys: dict[str, str]) -> Iterator:
    """Like ``client``, with the gallery declared mixed (queries of either modality)."""
    settings = get_settings(
        threads=1, max_upload_bytes=2_000_000, max_pixels=4_000_000, max_batch_images=4,
        queue_size=2, default_k=5, mixed_modality=True,
    )  # fmt: skip
    app = create_app(ServiceConfig(gallery_dir=gallery_copy, settings=settings))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def live_server(gallery_copy: Path, keys: dict[str, str]) -> Iterator[dict]:
    """The service over the tiny photo gallery in uvicorn; yields url, process, keys."""
    with serve(gallery_copy) as (url, proc):
        yield {"url": url, "proc": proc, "keys": keys}


# -- the same app on either backend ------------------------------------------------------------
@pytest.fixture(scope="module", params=["embedded", "shared"])
def backend_gallery(request, tmp_path_factory: pytest.TempPathFactory, built_gallery: Path):
    """The tiny gallery as a private embedded copy (state in state.sqlite), or imported into
    PostgreSQL + Milvus (state in its schema); yields (kind, directory)."""
    dst = tmp_path_factory.mktemp(f"gal-{request.param}") / "gallery"
    if request.param == "embedded":
        shutil.copytree(built_gallery, dst)
        yield request.param, dst
        return
    import uuid

    from gunmatch.database import create_shared_state
    from index.backends import BackendSpec
    from index.itemstore import StoreSpec
    from index.transfer import copy_gallery
    from tests.servers import drop_shared

    url = request.getfixturevalue("postgres_url")
    name = f"a_{uuid.uuid4().hex[:12]}"
    vector = BackendSpec("milvus", request.getfixturevalue("milvus_uri"), name)
    store = StoreSpec("postgresql", url, name)
    assert copy_gallery(built_gallery, dst, vector_store=vector, item_store=store).ok
    create_shared_state(dst)
    yield request.param, dst
    drop_shared(vector, store, url)


@pytest.fixture(scope="module")
def backend_client(backend_gallery) -> Iterator[tuple[str, Path, TestClient, dict[str, str]]]:
    """(kind, gallery, TestClient, one key per role) over ``backend_gallery``."""
    from gunmatch.state import open_state

    kind, gal = backend_gallery
    state = open_state(gal)
    try:
        keys = {r: state.keys.create(f"{r} key", r)[1] for r in ("station", "analyst", "admin")}
    finally:
        state.close()
    settings = get_settings(threads=1, max_upload_bytes=2_000_000, default_k=5)
    app = create_app(ServiceConfig(gallery_dir=gal, settings=settings))
    with TestClient(app) as c:
        yield kind, gal, c, keys
