"""Gallery augmentation with projected X-ray variants, and X-ray input normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from gunmatch.cli import main
from gunmatch.indexing import SourceRecord, build, gallery_writer
from index import Gallery
from matcher import Embedder, load_model, save_checkpoint
from matcher.model import with_preprocess
from matcher.preprocess import xray_to_transmission
from screening.regions import ProposalConfig, propose_regions

synth = pytest.importorskip("synth.xray")
augment = pytest.importorskip("screening.augment")

CFG = augment.AugmentConfig(variants=3, backgrounds=2, background_size=(320, 256))


@pytest.fixture(scope="module")
def embedder():
    torch.set_num_threads(1)
    return Embedder(with_preprocess(load_model("efficientnet_lite0"), input_size=64))


@pytest.fixture(scope="module")
def reference_png():
    t = synth.render_isolated("barrel", 5, 128).transmission
    buf = io.BytesIO()
    Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def test_object_patch_is_tight():
    ref = np.ones((50, 60), np.float32)
    ref[10:20, 5:45] = 0.3
    assert augment.object_patch(ref).shape == (10, 40)
    assert augment.object_patch(np.ones((5, 5), np.float32)).min() == 1.0


def test_projected_variants_hold_the_object_in_clutter():
    ref = synth.render_isolated("slide", 3, 128).transmission
    crops = augment.projected_variants(ref, CFG, 64, np.random.default_rng(0))
    assert len(crops) == 3
    for c in crops:
        assert c.shape == (64, 64) and c.dtype == np.float32
        assert c.min() >= 0.0 and c.max() <= 1.0
        assert c.min() < 0.5  # the (dense) slide is in the crop
    # Variants differ from each other (position, scale, background).
    assert not np.allclose(crops[0], crops[1])


def test_augmenter_is_deterministic_per_image(embedder, reference_png):
    fn = augment.xray_augmenter(embedder, CFG)
    v1, names = fn(reference_png, "ref.png")
    v2, _ = fn(reference_png, "ref.png")
    assert v1.shape == (3, embedder.dim) and names == ["projected0", "projected1", "projected2"]
    np.testing.assert_allclose(np.linalg.norm(v1, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(v1, v2, atol=1e-5)


def test_build_stores_variants_as_rows_of_one_item(embedder, reference_png, tmp_path):
    src = tmp_path / "src" / "barrel"
    src.mkdir(parents=True)
    (src / "b.png").write_bytes(reference_png)
    gallery = Gallery.create(tmp_path / "g", embedder.model_id, embedder.dim, "xray")
    records = [SourceRecord(path=src / "b.png", label="barrel", threat=True, modality="xray")]
    report = build(
        records,
        embedder,
        gallery_writer(gallery, embedder.model_id),
        progress=False,
        augment_fn=augment.xray_augmenter(embedder, CFG),
    )
    assert report.added == 1
    [item] = gallery.items()
    assert gallery.item_vectors(item.item_id).shape == (4, embedder.dim)
    # Search returns the item once, whichever variant matched best.
    query = gallery.item_vectors(item.item_id)[2:3]
    [matches] = gallery.search(query, k=5)
    assert [m.item.item_id for m in matches] == [item.item_id]
    assert matches[0].score == pytest.approx(1.0, abs=1e-4)
    gallery.close()


def _pseudo_png(high: np.ndarray) -> Image.Image:
    return Image.fromarray(synth.pseudo_colour(high, high**1.8))


def test_xray_exports_normalise_to_one_transmission():
    parcel = synth.render_parcel(77, size=(200, 160), threat_kind="slide", n_clutter=2)
    t = parcel.image
    grey8 = Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L")
    grey16 = Image.fromarray((t * 65535).astype(np.uint16))
    pseudo = Image.fromarray(parcel.colour())
    for img in (grey8, grey16):
        np.testing.assert_allclose(xray_to_transmission(img), t, atol=0.02)
    got = xray_to_transmission(pseudo)
    # Pseudo-colour loses the exact scale but keeps the density order (metal darkest).
    rank = np.corrcoef(np.argsort(np.argsort(got.ravel())), np.argsort(np.argsort(t.ravel())))
    assert rank[0, 1] > 0.95
    assert got[parcel.threat_mask].mean() < got[~parcel.threat_mask].mean()


def test_flat_field_makes_empty_belt_full_transmission():
    t = np.ones((40, 50), np.float32)
    t[10:30, 10:20] = 0.2
    dim = Image.fromarray(((t * 0.8) * 255).astype(np.uint8), "L")  # under-exposed belt
    out = xray_to_transmission(dim)
    assert out[0, 0] == pytest.approx(1.0, abs=0.01)
    assert out[15, 15] == pytest.approx(0.2, abs=0.02)


def test_clutter_crops_match_screening_proposals():
    t = synth.render_parcel(77, size=(480, 380), threat_kind=None, n_clutter=4).image
    crops = augment.clutter_crops(t, 3, 64)
    assert 1 <= len(crops) <= 3
    boxes, _ = propose_regions(t, ProposalConfig(max_regions=4))
    np.testing.assert_allclose([b for b, _ in crops], boxes[1 : 1 + len(crops)])
    for box, crop in crops:
        assert crop.shape == (64, 64) and box[2] < 480  # never the whole scan


def test_cli_add_clutter_adds_benign_regions_of_cleared_scans(embedder, tmp_path, capsys):
    root = tmp_path / "g"
    gallery = Gallery.create(root, embedder.model_id, embedder.dim, "xray")
    save_checkpoint(embedder.model, gallery.model_dir)
    gallery.close()
    t = synth.render_parcel(78, size=(480, 380), threat_kind=None, n_clutter=4).image
    scan = tmp_path / "cleared.png"
    Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L").save(scan)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    common = ["--gallery", str(root), "--per-scan", "3", "--threads", "1"]
    assert main(["gallery", "add-clutter", str(scan), str(bad), *common]) == 0
    text = capsys.readouterr().out
    assert "failed: " in text and "failed scans 1" in text
    with Gallery.open(root) as g:
        items = g.items()
        assert 1 <= len(items) <= 3
        kinds = {(it.label, it.category, it.threat) for it in items}
        assert kinds == {("clutter", "benign", False)}
        assert all(str(scan) in it.source for it in items)
        n = len(items)
    assert main(["gallery", "add-clutter", str(scan), *common]) == 0
    assert f"added 0 clutter references, already present {n}" in capsys.readouterr().out
    assert main(["gallery", "add-clutter", str(bad), *common]) == 1
