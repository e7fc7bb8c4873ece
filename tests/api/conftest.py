"""Fixtures for the service tests: one tiny gallery per session, copied onto the backend
(``--backend``) for each module, one app per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import ServiceConfig, create_app
from gunmatch.indexing import build, gallery_writer, scan_source
from gunmatch.service import create_engine
from gunmatch.settings import get_settings
from gunmatch.state import open_state
from tests.api.helpers import LABELS, create_keys, draw, serve
from tests.servers import gallery_on


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
def gallery_copy(
    request, tmp_path_factory: pytest.TempPathFactory, built_gallery: Path, gallery_backend: str
) -> Iterator[Path]:
    """A private copy of the gallery for one test module (tests may change it), on the
    backend: embedded files, or its own PostgreSQL schema + Milvus collection."""
    dst = tmp_path_factory.mktemp("galcopy") / "gallery"
    with gallery_on(gallery_backend, built_gallery, dst, request) as gal:
        yield gal


@pytest.fixture(scope="module")
def keys(gallery_copy: Path) -> dict[str, str]:
    """One key per role and a revoked admin key, created in the gallery's state."""
    out = create_keys(gallery_copy, "station", "analyst", "admin")
    state = open_state(gallery_copy)
    try:
        out["revoked"] = state.keys.create("old key", "admin")[1]
        state.keys.revoke("old key")
    finally:
        state.close()
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
