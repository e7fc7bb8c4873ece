"""The API's region output: POST /v1/search with regions=true on a generated X-ray scan."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from api.app import ServiceConfig, create_app
from gunmatch.settings import get_settings
from index import Gallery, NewItem
from matcher import Embedder, load_model, save_checkpoint
from matcher.model import with_preprocess
from matcher.preprocess import grey_to_tensor, letterbox_grey
from tests.api.helpers import create_keys
from tests.servers import moved_to

pytest.importorskip("fastapi")
synth = pytest.importorskip("synth.xray")
projection = pytest.importorskip("synth.projection")

SIZE = 64


def _png(t: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def xray_gallery(tmp_path_factory, gallery_backend, request) -> Iterator[tuple[Path, np.ndarray]]:
    """An X-ray gallery (slide, barrel, pen) on the backend, and the slide reference's
    transmission."""
    torch.set_num_threads(1)
    net = with_preprocess(load_model("efficientnet_lite0"), input_size=SIZE)
    root = tmp_path_factory.mktemp("xapi") / "gallery"
    save_checkpoint(net, root / "model")
    gallery = Gallery.create(root, net.model_id, net.dim, "xray")
    emb = Embedder(net)
    refs = [("slide", True, 21), ("barrel", True, 22), ("pen", False, 23)]
    images = [synth.render_isolated(k, s, 128).transmission for k, _, s in refs]
    vecs = emb.embed_tensors(
        torch.stack([grey_to_tensor(letterbox_grey(t, SIZE), net.config.preprocess)
                     for t in images])
    )  # fmt: skip
    gallery.add(
        [
            NewItem(vectors=v[None], label=k, image_bytes=_png(t), modality="xray", threat=th)
            for (k, th, _), t, v in zip(refs, images, vecs, strict=True)
        ],
        net.model_id,
    )
    gallery.close()
    with moved_to(gallery_backend, root, request) as gal:
        yield gal, images[0]


@pytest.fixture(scope="module")
def client(xray_gallery) -> Iterator:
    root, _ = xray_gallery
    key = create_keys(root, "station")["station"]
    settings = get_settings(threads=1, max_pixels=4_000_000, queue_size=2, default_k=3)
    app = create_app(ServiceConfig(gallery_dir=root, settings=settings))
    with TestClient(app) as c:
        c.key = key  # type: ignore[attr-defined]
        yield c


def test_search_with_regions_returns_boxes_matches_and_decisions(client, xray_gallery):
    _, slide = xray_gallery
    bg = synth.render_parcel(5151, size=(480, 380), threat_kind=None, n_clutter=3).image
    ys, xs = np.nonzero(slide < 0.98)
    patch = slide[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scan, box = projection.project(bg, patch, x=260, y=80)
    resp = client.post(
        "/v1/search",
        files={"image": ("scan.png", _png(scan))},
        data={"regions": "true", "k": "2"},
        headers={"X-API-Key": client.key},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    regions = body["regions"]
    assert isinstance(regions, list) and regions
    for r in regions:
        assert len(r["box"]) == 4 and r["box"][2] > 0 and r["box"][3] > 0
        assert r["decision"] in ("alert", "review", "clear")
        assert r["matches"] and {"label", "score", "threat"} <= set(r["matches"][0])
    top = regions[0]
    assert top["threat_match"]["label"] == "slide"
    x, y, w, h = top["box"]
    inter = max(0, min(x + w, box.x + box.w) - max(x, box.x)) * max(
        0, min(y + h, box.y + box.h) - max(y, box.y)
    )
    assert inter / (w * h + box.w * box.h - inter) >= 0.3
    # The scan's decision is at least as severe as every region's.
    order = ("clear", "review", "alert")
    worst = max((r["decision"] for r in regions), key=order.index)
    assert order.index(body["decision"]["decision"]) >= order.index(worst)


def test_search_without_regions_has_none(client):
    resp = client.post(
        "/v1/search",
        files={"image": ("scan.png", _png(np.ones((64, 64), np.float32)))},
        data={"regions": "false"},
        headers={"X-API-Key": client.key},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["regions"] is None


def test_xray_search_screens_regions_by_default(client, xray_gallery):
    """An X-ray gallery's search is region-aware unless asked not to be; matches keep shape."""
    _, slide = xray_gallery
    bg = synth.render_parcel(5252, size=(400, 320), threat_kind=None, n_clutter=2).image
    ys, xs = np.nonzero(slide < 0.98)
    scan, _ = projection.project(bg, slide[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
                                 x=200, y=60)  # fmt: skip
    body = client.post(
        "/v1/search",
        files={"image": ("scan.png", _png(scan))},
        data={"k": "3"},
        headers={"X-API-Key": client.key},
    ).json()
    assert isinstance(body["regions"], list) and body["regions"]
    matches = body["matches"]
    assert [m["rank"] for m in matches] == list(range(1, len(matches) + 1))
    assert len({m["item_id"] for m in matches}) == len(matches) == 3
    scores = [m["score"] for m in matches]
    assert scores == sorted(scores, reverse=True)
    # Region-aware: no reference scores lower than its best region match.
    for r in body["regions"]:
        for rm in r["matches"]:
            best = next(m for m in matches if m["item_id"] == rm["item_id"])
            assert best["score"] >= rm["score"] - 1e-4


def test_margin_score_setting_reaches_region_screening(xray_gallery):
    """GUNMATCH_SCREEN_SCORE_MODE=margin: each region's score is best threat minus best benign."""
    root, slide = xray_gallery
    key = create_keys(root, "station", name="margin key")["station"]
    settings = get_settings(threads=1, default_k=3, screen_score_mode="margin")
    bg = synth.render_parcel(5353, size=(400, 320), threat_kind=None, n_clutter=2).image
    ys, xs = np.nonzero(slide < 0.98)
    scan, _ = projection.project(bg, slide[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
                                 x=150, y=60)  # fmt: skip
    with TestClient(create_app(ServiceConfig(gallery_dir=root, settings=settings))) as c:
        resp = c.post(
            "/v1/search",
            files={"image": ("scan.png", _png(scan))},
            data={"regions": "true", "k": "3"},
            headers={"X-API-Key": key},
        )
    assert resp.status_code == 200, resp.text
    for r in resp.json()["regions"]:
        threat = max(m["score"] for m in r["matches"] if m["threat"])
        benign = max(m["score"] for m in r["matches"] if not m["threat"])
        assert r["threat_score"] == pytest.approx(threat - benign, abs=2e-3)
