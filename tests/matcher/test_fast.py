"""Inference paths: registry, ONNX Runtime equivalence, int8 agreement check, Embedder wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from matcher.embedder import Embedder
from matcher.fast import (
    MIN_AGREEMENT,
    RuntimeOptions,
    create_runner,
    list_paths,
    top1,
    top1_agreement,
)
from matcher.model import build_pretrained

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "weapon-types"


def drawing(i: int) -> Image.Image:
    """A small distinct PIL drawing: a few bars and discs placed by a seeded generator."""
    rng = np.random.default_rng(i)
    img = Image.new("RGB", (96, 64), tuple(int(c) for c in rng.integers(150, 255, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, 80, 2))
        w, h = (int(v) for v in rng.integers(8, 40, 2))
        colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)([x, y % 60, x + w, y % 60 + h], colour)
    return img


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_pretrained("efficientnet_lite0")


@pytest.fixture(scope="module")
def images(model):
    emb = Embedder(model, batch_size=8, threads=1)
    return torch.stack([emb.prepare(drawing(i), "photo") for i in range(16)])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return RuntimeOptions(cache_dir=tmp_path_factory.mktemp("rt"))


def test_registry_lists_paths_and_rejects_unknown(model):
    assert {"torch", "torch_bf16", "onnx", "onnx_int8"} <= set(list_paths())
    with pytest.raises(ValueError, match="onnx"):
        create_runner(model, "tensorrt")


def test_top1_agreement_is_pure_and_counts_changes():
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(10, 8)), rng.normal(size=(20, 8))
    assert top1_agreement(g, q, g, q) == 1.0
    unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    assert (top1(unit, unit) == np.arange(10)).all()  # each unit vector is its own best match
    flipped = top1_agreement(g, q, g, -q)
    assert 0.0 <= flipped < 1.0
    with pytest.raises(ValueError):
        top1_agreement(g, q[:0], g, q[:0])


def test_onnx_matches_torch_and_is_cached(model, images, cache):
    ref = create_runner(model, "torch")(images)
    out = create_runner(model, "onnx", threads=1, options=cache)(images)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert len(list(cache.cache().glob("*.onnx"))) == 1
    create_runner(model, "onnx", threads=1, options=cache)  # reuses the export
    assert len(list(cache.cache().glob("*.onnx"))) == 1


def test_int8_needs_calibration_then_runs_the_agreement_check(model, images, cache):
    with pytest.raises(ValueError, match="calibration"):
        create_runner(model, "onnx_int8", 1, RuntimeOptions(cache_dir=cache.cache_dir))
    opts = RuntimeOptions(cache_dir=cache.cache_dir, calibration=images[:8])
    int8 = create_runner(model, "onnx_int8", 1, opts)
    ref = create_runner(model, "torch")
    g_ref, q_ref = ref(images[:8]), ref(images[8:])
    g8, q8 = int8(images[:8]), int8(images[8:])
    assert g8.shape == g_ref.shape and np.isfinite(g8).all()
    agreement = top1_agreement(g_ref, q_ref, g8, q8)
    assert 0.0 <= agreement <= 1.0
    # int8 moves the vectors (it is not the float model) but keeps them in the same space.
    cos = np.sum(g8 * g_ref, axis=1)
    assert 0.5 < cos.mean() < 0.99999


def test_embedder_selects_the_path_and_keeps_its_api(model, cache):
    pics = [drawing(i) for i in range(5)]
    ref = Embedder(model, batch_size=4, threads=1).embed(pics)
    fast = Embedder(model, batch_size=4, threads=1, runtime="onnx", runtime_options=cache)
    assert fast.runtime == "onnx" and fast.dim == ref.shape[1]
    np.testing.assert_allclose(fast.embed(pics), ref, atol=2e-4)
    with pytest.raises(ValueError, match="unknown inference path"):
        Embedder(model, runtime="nope")


@pytest.mark.slow
@pytest.mark.realdata
def test_onnx_agreement_on_weapon_types_subset(model, cache):
    if not (DATA / "gallery").is_dir():
        pytest.skip(f"real data absent: {DATA}")
    emb = Embedder(model, batch_size=16, threads=1)
    files = {
        split: sorted(p for p in (DATA / split).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
        for split in ("gallery", "queries")
    }
    x_g = torch.stack([emb.prepare(p, "photo") for p in files["gallery"][::40]])
    x_q = torch.stack([emb.prepare(p, "photo") for p in files["queries"][::40]])
    ref = create_runner(model, "torch")
    fast = create_runner(model, "onnx", 1, cache)
    agreement = top1_agreement(ref(x_g), ref(x_q), fast(x_g), fast(x_q))
    assert agreement >= MIN_AGREEMENT
