"""Shared fixtures: one pretrained model per session, tiny generated image sets, the
X-ray screening fixtures (a tiny gallery of generated references, a scan, a threat map), and
the gallery backend the API and CLI tests run on (``--backend``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gunmatch.maps import install_threatmap
from gunmatch.service import Engine
from index import Gallery, NewItem
from matcher import Embedder, build_pretrained, load_model, save_checkpoint
from matcher.model import with_preprocess
from matcher.preprocess import grey_to_tensor, letterbox_grey
from synth.projection import project
from synth.xray import render_isolated, render_parcel
from tests.helpers import REFS, SIZE, TINY, write_image_tree, xray_png
from tests.servers import milvus_uri, moved_to, postgres_url  # noqa: F401  (session fixtures)
from training.xray.threatmap import train_threatmap

torch.set_num_threads(2)

BACKENDS = ("embedded", "shared")


# -- the gallery backend: --backend embedded | shared | both -----------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=(*BACKENDS, "both"),
        default="embedded",
        help="gallery backend of the tests that take one (fixture gallery_backend): embedded "
        "(FAISS + SQLite files), shared (PostgreSQL + Milvus; tests that take no gallery are "
        "deselected, they run the same on both), or both (those tests parametrised)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gallery_backend" in metafunc.fixturenames and metafunc.config.option.backend == "both":
        metafunc.parametrize("gallery_backend", BACKENDS, indirect=True, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.backend != "shared":
        return
    keep = [i for i in items if "gallery_backend" in getattr(i, "fixturenames", ())]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.fixture(scope="module")
def gallery_backend(request: pytest.FixtureRequest) -> str:
    """The backend this module's galleries live on: ``embedded`` or ``shared``."""
    return getattr(request, "param", None) or request.config.option.backend


@pytest.fixture()
def new_galleries(gallery_backend: str, request, monkeypatch, tmp_path: Path) -> Iterator[str]:
    """Galleries the code under test creates go to the backend, as a user's settings send
    them: under ``shared`` GUNMATCH_DATABASE_URL and GUNMATCH_VECTOR_URI are set, and every
    shared gallery made under tmp_path is dropped afterwards. Yields the backend."""
    if gallery_backend == "embedded":
        yield gallery_backend
        return
    from tests.servers import drop_gallery_share

    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("GUNMATCH_DATABASE_URL", url)
    monkeypatch.setenv("GUNMATCH_VECTOR_URI", request.getfixturevalue("milvus_uri"))
    yield gallery_backend
    for manifest in tmp_path.rglob("manifest.json"):
        drop_gallery_share(manifest.parent, url)


@pytest.fixture(scope="session", autouse=True)
def audit_secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The audit chain's secret outside every gallery: a test never writes the user's own."""
    path = tmp_path_factory.mktemp("secrets") / "audit.key"
    mp = pytest.MonkeyPatch()
    mp.setenv("GUNMATCH_AUDIT_SECRET_FILE", str(path))  # also for `gunmatch serve` subprocesses
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def lite0():
    """The bundled ImageNet efficientnet_lite0 model (loaded once)."""
    return build_pretrained("efficientnet_lite0")


@pytest.fixture(scope="session")
def embedder(lite0):
    """An Embedder on the bundled default model."""
    return Embedder(lite0, batch_size=16, threads=2)


@pytest.fixture()
def image_tree(tmp_path: Path) -> Path:
    """A small labelled folder of generated images."""
    return write_image_tree(tmp_path / "src", ["barrel", "magazine", "spring"], 4)


# -- X-ray screening: a tiny gallery of generated references, a scan, a threat map ------


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A tiny X-ray gallery (64-px model) of two threat and two benign generated references."""
    torch.set_num_threads(1)
    net = with_preprocess(load_model("efficientnet_lite0"), input_size=SIZE)
    emb = Embedder(net, batch_size=16)
    root = tmp_path_factory.mktemp("xgal") / "gallery"
    gallery = Gallery.create(root, net.model_id, net.dim, "xray")
    save_checkpoint(net, gallery.model_dir)
    refs = {k: render_isolated(k, seed, 128).transmission for k, _, seed in REFS}
    batch = torch.stack(
        [grey_to_tensor(letterbox_grey(t, SIZE), net.config.preprocess) for t in refs.values()]
    )
    vecs = emb.embed_tensors(batch)
    gallery.add(
        [
            NewItem(
                vectors=v[None],
                label=k,
                image_bytes=xray_png(refs[k]),
                modality="xray",
                threat=threat,
                category="benign" if not threat else k,
            )
            for (k, threat, _), v in zip(REFS, vecs, strict=True)
        ],
        net.model_id,
    )
    eng = Engine(gallery, emb)
    eng.refs = refs  # type: ignore[attr-defined]
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def scan(engine):
    """A generated clean parcel with the gallery's slide reference projected into it."""
    bg = render_parcel(4242, size=(480, 380), threat_kind=None, n_clutter=3).image
    obj = engine.refs["slide"]
    ys, xs = np.nonzero(obj < 0.98)
    patch = obj[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    image, box = project(bg, patch, scale=1.0, x=300, y=60)
    return image, np.array([box.as_tuple()], float)


@pytest.fixture(scope="module")
def tiny_map(tmp_path_factory):
    """A threat map trained for three epochs on six small generated parcels."""
    out = tmp_path_factory.mktemp("tmap") / "map"
    card = train_threatmap(TINY, out, progress=False)
    return out, card


@pytest.fixture()
def mapped_gallery(engine, tiny_map, tmp_path, gallery_backend, request) -> Iterator[Path]:
    """A copy of the tiny X-ray gallery with the tiny threat map installed, on the backend."""
    engine.gallery.flush()
    root = tmp_path / "gallery"
    shutil.copytree(engine.gallery.root, root, ignore=shutil.ignore_patterns("*.lock", ".lock"))
    with Gallery.open(root) as g:
        install_threatmap(g, tiny_map[0])
    with moved_to(gallery_backend, root, request) as gal:
        yield gal
