"""One-epoch-scale training on generated images: loss falls, checkpoint round-trips."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gunmatch.cli import main
from index.feedback import FeedbackStore
from matcher import Embedder, build_pretrained, load_model, save_checkpoint
from matcher.model import with_preprocess
from tests.helpers import (
    build_gallery,
    shape_image,
    varied_image,
    write_image_tree,
    write_varied_tree,
)
from training.augment import AugmentConfig, augment, clutter_background
from training.data import (
    Sample,
    assign_groups,
    co_labels,
    dhash,
    grouped_split,
    scan_folders,
    stem_key,
)
from training.features import cache_views
from training.feedback import gallery_samples
from training.fit import FitConfig, _batches, fit
from training.losses import margin_softmax
from training.train import (
    PHOTO_MAX_EPOCHS,
    TrainConfig,
    decode_side,
    scheduled_epochs,
    train,
)

LABELS = ["barrel", "magazine", "spring"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run: 3 labels x 6 drawings, 64 px input, 1 augmented pass, 3 epochs."""
    root = tmp_path_factory.mktemp("train")
    data = write_varied_tree(root / "data", LABELS, 6)
    cfg = TrainConfig(
        out=str(root / "model"),
        data=str(data),
        input_size=64,
        aug_passes=1,
        val_fraction=0.34,
        threads=1,
        progress=False,
        fit=FitConfig(epochs=6, batch_size=12, patience=10, seed=3),
        min_steps=0,
    )
    return cfg, train(cfg)


def test_training_loss_decreases(trained):
    _, report = trained
    losses = [h["loss"] for h in report.fit["history"][1:]]
    assert len(losses) == 6
    assert losses[-1] < losses[0]
    assert report.samples == 18 and report.train_samples + report.val_samples == 18
    assert report.val_samples > 0


def test_checkpoint_round_trips(trained):
    _, report = trained
    model = load_model(report.model_dir)
    assert model.model_id == report.model_id
    assert model.config.preprocess.input_size == 64
    card = json.loads((Path(report.model_dir) / "meta.json").read_text())["card"]
    assert card["labels"] == LABELS
    assert card["train_config"]["fit"]["epochs"] == 6
    assert len(card["data_sha256"]) == 64
    saved = json.loads((Path(report.model_dir) / "training.json").read_text())
    assert saved["fit"]["best_epoch"] == report.fit["best_epoch"]
    # The reloaded weights give the same vectors as a fresh load of the same directory.
    img = shape_image("barrel", 99)
    a = Embedder(model, threads=1).embed([img])
    b = Embedder(load_model(report.model_dir), threads=1).embed([img])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-5)
    # ...and differ from the base model's at the same input size: the trained weights were saved.
    assert (Path(report.model_dir) / "weights.pt").is_file()
    base = with_preprocess(load_model("efficientnet_lite0"), input_size=64)
    assert model.model_id != base.model_id
    assert not np.allclose(a, Embedder(base, threads=1).embed([img]), atol=1e-3)


def test_training_is_reproducible(trained, tmp_path):
    cfg, report = trained
    again = train(replace(cfg, out=str(tmp_path / "again"), fit=replace(cfg.fit, epochs=1)))
    first = train(replace(cfg, out=str(tmp_path / "first"), fit=replace(cfg.fit, epochs=1)))
    assert again.model_id == first.model_id
    assert [h["loss"] for h in again.fit["history"][1:]] == [
        h["loss"] for h in first.fit["history"][1:]
    ]


def test_grouped_split_keeps_near_copies_together(tmp_path):
    imgs, samples = [], []
    for i in range(6):
        base = shape_image("magazine", i)
        for j, im in enumerate([base, base.resize((90, 90)).resize((96, 96))]):
            p = tmp_path / f"m{i}_{j}.png"
            im.save(p)
            samples.append(Sample(p, "magazine"))
            imgs.append(im)
    assign_groups(samples, imgs)
    train_idx, val_idx = grouped_split(samples, 0.5, seed=0)
    groups_train = {samples[i].group for i in train_idx}
    groups_val = {samples[i].group for i in val_idx}
    assert groups_train and groups_val and not groups_train & groups_val


def test_a_picture_filed_under_two_labels_is_found(tmp_path):
    tree = write_varied_tree(tmp_path / "data", LABELS, 2)
    # One picture of a barrel and a magazine together, filed under both labels.
    both = varied_image("both", 7)
    for label in ("barrel", "magazine"):
        both.save(tree / label / "wall.png")
    samples = scan_folders(tree)
    images = [Image.open(s.path).convert("RGB") for s in samples]
    assign_groups(samples, images)
    index = {lab: i for i, lab in enumerate(LABELS)}
    found = co_labels(samples, index)
    wall = {i: samples[i].label for i, s in enumerate(samples) if s.path.name == "wall.png"}
    assert sorted(found) == sorted(wall)
    assert {wall[i]: found[i] for i in found} == {"barrel": [1], "magazine": [0]}


def test_excluded_labels_leave_the_softmax():
    cos = torch.tensor([[0.5, 0.6, 0.1], [0.2, 0.1, 0.9]], requires_grad=True)
    labels = torch.tensor([0, 2])
    # Row 0's picture is also filed under label 1; row 2 marks its own label, which stays.
    exclude = torch.tensor([[False, True, False], [False, False, True]])
    loss = margin_softmax(cos, labels, "cosface", 30.0, 0.2, exclude)
    row0 = torch.nn.functional.cross_entropy(30 * torch.tensor([[0.3, 0.1]]), torch.tensor([0]))
    row1 = torch.nn.functional.cross_entropy(30 * torch.tensor([[0.2, 0.1, 0.7]]), labels[1:])
    assert torch.isclose(loss, (row0 + row1) / 2, atol=1e-5)
    loss.backward()
    assert cos.grad[0, 1] == 0 and cos.grad[1, 2] != 0
    kept = margin_softmax(cos.detach(), labels, "cosface", 30.0, 0.2)
    assert kept > loss  # kept in, label 1 (the higher cosine) pushes row 0 harder


def test_co_labels_settings_reach_the_loss(tmp_path):
    tree = write_varied_tree(tmp_path / "data", LABELS[:2], 3)
    for label in LABELS[:2]:
        varied_image("both", 7).save(tree / label / "wall.png")
    first_losses = {}
    for setting in ("keep", "mask", "drop"):
        cfg = TrainConfig(
            out=str(tmp_path / setting),
            data=str(tree),
            input_size=64,
            aug_passes=1,
            threads=1,
            progress=False,
            min_steps=0,
            fit=FitConfig(epochs=1, batch_size=8, seed=1, co_labels=setting),
        )
        first_losses[setting] = train(cfg).fit["history"][1]["loss"]
    assert len(set(first_losses.values())) == 3
    with pytest.raises(ValueError, match="co_labels"):
        train(replace(cfg, fit=replace(cfg.fit, co_labels="vote")))


def test_co_labels_without_a_map_train_as_keep():
    # train-xray calls fit without a map of pictures filed under several labels.
    images = [varied_image(label, i) for label in ("a", "b") for i in range(3)]
    labels = np.array([0, 0, 0, 1, 1, 1])

    def model():
        return with_preprocess(build_pretrained(), input_size=64)

    views = cache_views(model(), images, ["photo"] * 6, 12, 1, 0)
    losses = {}
    for setting in ("keep", "mask", "drop"):
        cfg = FitConfig(epochs=1, batch_size=4, co_labels=setting)
        result = fit(model(), views, labels, list(range(6)), [], 12, cfg, 2, None, False)
        losses[setting] = result.history[-1]["loss"]
    assert losses["mask"] == losses["drop"] == losses["keep"]


def test_balanced_batches_hold_every_label_equally():
    labels = np.array([0] * 50 + [1] * 6 + [2] * 30 + [-1] * 4)
    idx = list(range(len(labels)))
    cfg = FitConfig(batch_size=32, sampler="balanced")
    batches = list(_batches(labels, idx, cfg, np.random.default_rng(0)))
    assert len(batches) == 3  # as many steps as a shuffled epoch of 90 images
    for b in batches:  # 4 groups (the unlabelled one included) x 8 images
        assert np.bincount(labels[b] + 1, minlength=4).tolist() == [8, 8, 8, 8]
    small = np.concatenate(batches)[labels[np.concatenate(batches)] == 1]
    assert set(small.tolist()) == set(range(50, 56))  # the small label cycles through all
    many = np.repeat(np.arange(10), 5)  # more labels than fit: 4 distinct labels x 2 each
    for b in _batches(many, list(range(50)), replace(cfg, batch_size=8), np.random.default_rng(1)):
        assert sorted(np.bincount(many[b]).tolist())[-4:] == [2, 2, 2, 2]


def test_an_unknown_sampler_is_refused():
    views = torch.zeros(1, 2, 1, 1, 1)
    with pytest.raises(ValueError, match="sampler"):
        fit(None, views, np.array([0, 1]), [0, 1], [], 0, FitConfig(sampler="pk"), 2)


def test_balanced_batches_are_refused_with_the_pair_loss_that_draws_its_own():
    views = torch.zeros(1, 2, 1, 1, 1)
    cfg = FitConfig(sampler="balanced", loss="multi_similarity")
    with pytest.raises(ValueError, match="use sampler random"):
        fit(None, views, np.array([0, 1]), [0, 1], [], 0, cfg, 2)


def test_stem_key_and_dhash():
    assert stem_key(Path("gun (1).jpg")) == stem_key(Path("gun.jpg"))
    assert stem_key(Path("a_jpg.rf.0123abcd.jpg")) == "a"
    img = shape_image("spring", 1)

    def distance(a, b) -> int:
        return bin(dhash(a) ^ dhash(b)).count("1")

    assert distance(img, img.resize((120, 120))) <= 4  # a rescaled copy stays in the group
    assert distance(img, shape_image("barrel", 1)) > 4


def test_augmentations_per_modality():
    rng = np.random.default_rng(0)
    photo = augment(shape_image("barrel", 0), "photo", rng, AugmentConfig())
    assert photo.mode == "RGB" and min(photo.size) > 8
    bg = clutter_background((64, 64), rng)
    assert bg.min() < 1.0 and bg.max() <= 1.0
    obj = Image.fromarray(np.full((40, 20), 80, np.uint8), "L")
    xr = augment(obj, "xray", rng, replace(AugmentConfig(), p_projection=1.0))
    t = np.asarray(xr, dtype=np.float32)
    assert xr.mode == "F" and t.max() <= 1.0 and t.min() >= 0.0
    # Transmissions multiply: the object part is darker than the object alone (gamma aside).
    assert t.min() < 0.6


def test_scan_folders_rejects_empty(tmp_path):
    with pytest.raises(ValueError):
        scan_folders(tmp_path)
    write_image_tree(tmp_path, ["a"], 1)
    assert [s.label for s in scan_folders(tmp_path)] == ["a"]


def test_training_from_gallery_and_feedback(tmp_path):
    """Gallery items plus feedback: a confirmed match is a positive, a rejection a negative."""

    model_dir = save_checkpoint(
        with_preprocess(build_pretrained(), input_size=64), tmp_path / "base"
    )
    src = write_varied_tree(tmp_path / "src", LABELS, 3)
    gallery = tmp_path / "gallery"
    items = build_gallery(gallery, model_dir, src)
    (gallery / "feedback").mkdir()
    varied_image("spring", 500).save(gallery / "feedback" / "q1.png")
    varied_image("magazine", 501).save(gallery / "feedback" / "q2.png")
    varied_image("barrel", 502).save(gallery / "feedback" / "q3.png")
    store = FeedbackStore(gallery / "state.sqlite")
    store.add("a", "q1", "1" * 64, "feedback/q1.png", items["spring"].item_id, "correct")
    store.add(
        "a",
        "q2",
        "2" * 64,
        "feedback/q2.png",
        items["barrel"].item_id,
        "wrong",
        correct_label="magazine",
    )
    store.add("a", "q3", "3" * 64, "feedback/q3.png", items["spring"].item_id, "wrong")
    store.add("a", "q4", "4" * 64, "feedback/missing.png", items["spring"].item_id, "correct")
    store.close()

    samples = gallery_samples(gallery)
    fb = {s.path.name: s for s in samples if s.path.parent.name == "feedback"}
    assert len(samples) == 9 + 3
    assert (fb["q1.png"].label, fb["q1.png"].negatives) == ("spring", [])
    assert (fb["q2.png"].label, fb["q2.png"].negatives) == ("magazine", ["barrel"])
    assert (fb["q3.png"].label, fb["q3.png"].negatives) == ("", ["spring"])

    report = train(
        TrainConfig(
            out=str(tmp_path / "out"),
            gallery=str(gallery),
            base=str(model_dir),
            aug_passes=1,
            val_fraction=0.0,
            threads=1,
            progress=False,
            fit=FitConfig(epochs=2, batch_size=12, seed=1),
            min_steps=5,  # 12 images are one batch: the schedule raises 2 epochs to 5
        )
    )
    assert report.samples == 12 and report.labels == LABELS
    assert report.config["fit"]["epochs"] == 5 and len(report.fit["history"]) == 1 + 5
    assert all(np.isfinite(h["loss"]) for h in report.fit["history"][1:])
    assert load_model(report.model_dir).config.preprocess.input_size == 64


def test_the_schedule_counts_optimiser_steps():
    # 949 images in batches of 32: 30 a epoch, 10 epochs reach 300 steps.
    assert scheduled_epochs(6, 949, 32, 300) == 10
    assert scheduled_epochs(6, 500, 32, 300) == 19
    # 115 images: 4 batches an epoch would need 75 epochs; capped.
    assert scheduled_epochs(6, 115, 32, 300) == PHOTO_MAX_EPOCHS
    # Never fewer than asked, and min_steps 0 leaves the epochs as they are.
    assert scheduled_epochs(6, 20_000, 32, 300) == 6
    assert scheduled_epochs(3, 115, 32, 0) == 3


def test_images_are_decoded_for_the_input_size():
    # 320 px for the photo recipe's 288 and anything smaller; a ninth above larger inputs.
    assert decode_side(288) == decode_side(64) == 320
    assert decode_side(384) == 427


def test_train_cli(tmp_path, capsys):
    data = write_varied_tree(tmp_path / "data", LABELS[:2], 4)
    out = tmp_path / "model"
    rc = main(
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--aug-passes",
            "1",
            "--input-size",
            "64",
            "--threads",
            "1",
            "--quiet",
            "--register",
            str(tmp_path / "reg"),
        ]
    )
    assert rc == 0
    assert "trained model efficientnet_lite0-" in capsys.readouterr().out
    assert (out / "meta.json").is_file() and (out / "training.json").is_file()
    assert len(list((tmp_path / "reg" / "models").iterdir())) == 1
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(out)])
    assert exc.value.code == 2
