"""The validation-split harness behind the photo recipe's choices (issue #15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import photo_validation as pv
from matcher import build_pretrained, save_checkpoint
from matcher.model import with_preprocess
from tests.helpers import write_varied_tree
from training.trunk import n_blocks, trainable_forward


def test_the_split_is_symlinks_on_two_sides_of_every_label(tmp_path):
    gallery = write_varied_tree(tmp_path / "gallery", ["a", "b"], 5)
    counts = pv.write_split(gallery, tmp_path / "split")
    train = sorted((tmp_path / "split" / "train").rglob("*.png"))
    val = sorted((tmp_path / "split" / "val").rglob("*.png"))
    assert counts == {"train": len(train), "val": len(val), "seed": 0}
    assert len(train) + len(val) == 10 and {p.parent.name for p in val} == {"a", "b"}
    assert all(p.is_symlink() and p.resolve().parent.parent == gallery for p in train + val)
    assert not {p.name for p in train} & {p.name for p in val}


def test_the_subset_takes_the_first_images_of_each_label(tmp_path):
    gallery = write_varied_tree(tmp_path / "gallery", ["a", "b"], 5)
    assert pv.main(["subset", str(gallery), str(tmp_path / "sub"), "--per-label", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "sub" / "b").iterdir()) == [
        "b_0.png",
        "b_1.png",
        "b_2.png",
    ]
    assert len(list((tmp_path / "sub").rglob("*.png"))) == 6


def test_vote_and_prototype_follow_the_neighbourhood_not_the_single_nearest():
    g_labels = np.array(["x", "y", "y", "y"])
    sim = np.array([[0.90, 0.89, 0.88, 0.87]])  # nearest is x, the next three are y
    assert pv.label_vote(sim, g_labels, 4, 0.1)[0] == "y"
    assert pv.label_vote(sim, g_labels, 1, 0.1)[0] == "x"
    g = pv.unit(np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0]]))
    q = pv.unit(np.array([[0.8, 1.0]]))
    fused = pv.prototype_fusion(q @ g.T, q, g, g_labels, 2.0)
    assert g_labels[fused.argmax()] == "y"


def test_expansion_and_augmentation_keep_unit_vectors():
    rng = np.random.default_rng(0)
    g, q = pv.unit(rng.normal(size=(12, 8))), pv.unit(rng.normal(size=(3, 8)))
    dba = pv.database_augmentation(g, 3)
    assert np.allclose(np.linalg.norm(dba, axis=1), 1.0)
    qe = pv.query_expansion(q, g, 3, 3.0)
    assert qe.shape == (3, 12) and np.all(np.abs(qe) <= 1.0 + 1e-6)


def test_activation_box_maps_the_hot_corner_back_to_image_pixels():
    img = Image.new("RGB", (400, 200))
    fmap = torch.zeros(4, 8, 8)
    fmap[:, 2:4, 0:2] = 1.0  # letterbox rows 2-3 (the image spans rows 2-5), columns 0-1
    box = pv.activation_box(img, fmap, 64)
    assert box[0] == 0 and box[1] == 0 and 100 <= box[2] <= 120 and box[3] <= 120
    assert pv.activation_box(img, torch.zeros(4, 8, 8), 64) == (0, 0, 400, 200)


def test_search_prints_a_row_per_view(tmp_path, capsys):
    gallery = write_varied_tree(tmp_path / "gallery", ["a", "b"], 5)
    pv.write_split(gallery, tmp_path / "split")
    model = save_checkpoint(with_preprocess(build_pretrained(), input_size=64), tmp_path / "m")
    assert pv.main(["search", str(model), str(tmp_path / "split"), "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["views"] for r in rows][:2] == ["plain", "flip TTA"] and len(rows) == 5
    assert all(0.0 <= r["nearest"] <= 1.0 and r["val"] == rows[0]["val"] for r in rows)


def test_schedule_fits_each_variant_on_the_cache_of_its_own_setting(tmp_path, monkeypatch):
    gallery = write_varied_tree(tmp_path / "gallery", ["a", "b"], 5)
    monkeypatch.setattr(pv, "PHOTO_INPUT_SIZE", 64)
    cached: list[tuple[int, int, int, int]] = []
    cache_views = pv.cache_views

    def counting(model, images, modalities, freeze_blocks, passes, *args):
        size = model.config.preprocess.input_size
        cached.append((n_blocks(model), size, freeze_blocks, passes))
        return cache_views(model, images, modalities, freeze_blocks, passes, *args)

    monkeypatch.setattr(pv, "cache_views", counting)
    decoded: list[int] = []
    load_images = pv.load_images

    def decoding(samples, max_side):
        decoded.append(max_side)
        return load_images(samples, max_side)

    monkeypatch.setattr(pv, "load_images", decoding)
    variants = [
        {"epochs": 1},
        {"epochs": 2, "lr": 1e-3},
        {"epochs": 1, "freeze_blocks": 12},
        {"epochs": 1, "freeze_blocks": 12, "aug_passes": 1},
        {"epochs": 1, "freeze_blocks": 12, "aug_passes": 1, "base": "efficientnet_lite2"},
        {"epochs": 1, "freeze_blocks": 12, "aug_passes": 1, "input_size": 96},
        {"epochs": 1, "freeze_blocks": 12, "aug_passes": 1, "input_size": 384},
    ]
    rows = list(pv.schedule_rows(gallery, variants, [0], threads=1))
    # the default's cache serves two variants
    assert cached == [
        (16, 64, 8, 3),
        (16, 64, 12, 3),
        (16, 64, 12, 1),
        (21, 64, 12, 1),
        (16, 96, 12, 1),
        (16, 384, 12, 1),
    ]
    # decoded once at 320 px for grouping and inputs up to 288, again only for 384
    assert decoded == [320, 427]
    # the history starts with the untrained model's top-1
    assert [len(r["val_top1_per_epoch"]) for r in rows] == [2, 3, 2, 2, 2, 2, 2]
    assert rows[2]["freeze_blocks"] == 12 and rows[1]["lr"] == 1e-3
    assert all(0.0 <= r["last_per_split"][0] <= 1.0 for r in rows)


def test_last_stride_one_doubles_the_trained_blocks_resolution():
    model = with_preprocess(build_pretrained(), input_size=64)
    net = model.backbone.net
    fmap = torch.randn(1, net._blocks[7]._project_conv.out_channels, 4, 4)

    def last_map(m):
        y = fmap
        for block in m.backbone.net._blocks[8:]:
            y = block(y)
        return y.shape[-2:]

    with torch.no_grad():
        before = last_map(model)
        pv.with_last_stride_one(model, 8)
        after = last_map(model)
        emb = trainable_forward(model, fmap, 8)
    assert tuple(before) == (2, 2) and tuple(after) == (4, 4)
    assert emb.shape == (1, model.dim) and torch.isfinite(emb).all()
    with pytest.raises(ValueError, match="frozen"):
        pv.with_last_stride_one(with_preprocess(build_pretrained(), input_size=64), 12)


def test_a_last_stride_other_than_one_or_two_is_refused_before_any_image_is_read(tmp_path):
    with pytest.raises(ValueError, match="last_stride is 1 or 2, not 3"):
        next(pv.schedule_rows(tmp_path / "missing", [{"last_stride": 3}], [0], threads=1))
