"""Fixtures for the service tests: one tiny gallery per session, one app per module."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

# label -> (threat, category, drawing)
LABELS = {
    "pistol_slide": (True, "slide", "slide"),
    "barrel": (True, "barrel", "barrel"),
    "spanner": (False, "benign", "spanner"),
    "umbrella": (False, "benign", "umbrella"),
}


def draw(kind: str, variant: int, size: int = 96) -> Image.Image:
    """A simple, distinct drawing per kind; variants shift and scale it a little."""
    img = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(img)
    o = variant * 3
    if kind == "slide":
        d.rectangle((8 + o, 30, 88 - o, 52), fill=(40, 40, 45))
        d.rectangle((60, 52, 76, 84 - o), fill=(60, 60, 60))
    elif kind == "barrel":
        d.rectangle((4, 44 + o, 92, 54 + o), fill=(90, 90, 100))
        d.ellipse((84, 42 + o, 94, 56 + o), fill=(20, 20, 20))
    elif kind == "spanner":
        d.ellipse((6 + o, 6 + o, 34 + o, 34 + o), outline=(150, 80, 20), width=6)
        d.line((28, 28, 86 - o, 86 - o), fill=(150, 80, 20), width=9)
    else:
        d.pieslice((10, 10 + o, 86, 70 + o), 180, 360, fill=(30, 90, 200))
        d.line((48, 40, 48, 90), fill=(30, 30, 30), width=4)
    return img


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    """Encode an image."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


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
    from gunmatch.indexing import build, gallery_writer, scan_source
    from gunmatch.service import create_engine

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
    from gunmatch.state import KeyStore, state_db_path

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
    from fastapi.testclient import TestClient

    from api.app import ServiceConfig, create_app
    from gunmatch.settings import get_settings

    settings = get_settings(
        threads=1, max_upload_bytes=2_000_000, max_pixels=4_000_000, max_batch_images=4,
        queue_size=2, default_k=5,
    )  # fmt: skip
    app = create_app(ServiceConfig(gallery_dir=gallery_copy, settings=settings))
    with TestClient(app) as c:
        yield c


def hdr(key: str) -> dict[str, str]:
    """The auth header."""
    return {"X-API-Key": key}


def search(client, key: str, data: bytes, name: str = "q.png", **form):
    """POST one image to /v1/search."""
    return client.post("/v1/search", files={"image": (name, data)}, data=form, headers=hdr(key))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(gallery: Path) -> Iterator[tuple[str, object]]:
    """`gunmatch serve GALLERY` in a real uvicorn process on a free port: (url, process)."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    env = {**os.environ, "GUNMATCH_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunmatch.cli", "serve", "--gallery", str(gallery),
         "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gunmatch serve exited early:\n{proc.stdout.read()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunmatch serve did not become ready in 90 s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def live_server(gallery_copy: Path, keys: dict[str, str]) -> Iterator[dict]:
    """The service over the tiny photo gallery in uvicorn; yields url, process, keys."""
    with serve(gallery_copy) as (url, proc):
        yield {"url": url, "proc": proc, "keys": keys}
