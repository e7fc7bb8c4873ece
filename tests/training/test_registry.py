"""Model registry and gated promotion: refused on a worse model, accepted on a better one."""

from __future__ import annotations

import json

import pytest
import torch

from gunmatch.cli import main
from index import Gallery
from index.feedback import FeedbackStore
from matcher import build_pretrained, save_checkpoint
from matcher.model import with_preprocess
from tests.helpers import build_gallery, write_varied_tree
from training.promote import compare
from training.registry import Registry

LABELS = ["barrel", "magazine", "spring"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A good model (ImageNet lite0 at 64 px) and a bad one (its head conv scrambled)."""
    root = tmp_path_factory.mktemp("models")
    good = with_preprocess(build_pretrained(), input_size=64)
    good_dir = save_checkpoint(good, root / "good")
    bad = with_preprocess(build_pretrained(), input_size=64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bad.backbone.net._blocks[-3:].parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * p.std())
    bad.weights_sha256 = None  # not the bundled weights any more
    bad_dir = save_checkpoint(bad, root / "bad")
    return good_dir, bad_dir


@pytest.fixture()
def setup(tmp_path, models):
    good, bad = models
    src = write_varied_tree(tmp_path / "src", LABELS, 3)
    queries = write_varied_tree(tmp_path / "queries", LABELS, 3)
    gallery = tmp_path / "gallery"
    build_gallery(gallery, bad, src)
    store = FeedbackStore(gallery / "state.sqlite")
    store.add("analyst", "q1", "ab" * 32, "feedback/x.png", "item", "correct")
    store.close()
    return gallery, queries, tmp_path / "registry"


def _model_id(gallery) -> str:
    with Gallery.open(gallery) as g:
        return g.model_id


def test_compare_names_the_metric_that_fell():
    gate = compare({"top1": 0.8, "map@10": 0.5}, {"top1": 0.7, "map@10": 0.6}, 0.01)
    assert not gate.accepted
    assert gate.drops == ["top1 fell from 0.8000 to 0.7000 (tolerance 0.0100)"]
    assert compare({"top1": 0.8}, {"top1": 0.795}, 0.01).accepted


def test_promotion_accepted_then_refused_then_rollback(setup, models, capsys):
    gallery, queries, reg_dir = setup
    good, bad = models
    bad_id = _model_id(gallery)
    # The gallery's own calibration under its first model: a rollback must bring it back.
    first_cal = {"model_id": bad_id, "alert": 0.91, "review": 0.77, "source": "analyst"}
    (gallery / "calibration.json").write_text(json.dumps(first_cal))
    common = ["--gallery", str(gallery), "--registry", str(reg_dir), "--quiet", "--threads", "1"]

    rc = main(
        [
            "model",
            "promote",
            str(good),
            "--eval-queries",
            str(queries),
            "--threat-labels",
            "barrel",
            *common,
        ]
    )
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0, captured.err
    assert "promoted" in text and "kill -HUP" in text
    good_id = _model_id(gallery)
    assert good_id != bad_id
    # The service's state moved with the switch; a calibration for the new model was written.
    assert FeedbackStore(gallery / "state.sqlite").count() == 1
    assert json.loads((gallery / "calibration.json").read_text())["model_id"] == good_id
    assert len(Gallery.open(gallery)) == 9

    # The scrambled model is worse on the recorded evaluation set: refused, gallery unchanged.
    rc = main(["model", "promote", str(bad), *common])
    text = capsys.readouterr().out
    assert rc == 1
    assert "promotion refused" in text and "fell from" in text
    assert _model_id(gallery) == good_id
    assert not list(gallery.parent.glob(".gallery.promote-*"))

    reg = Registry(reg_dir)
    assert [h["action"] for h in reg.history()] == ["promote", "refused"]
    assert {e.model_id for e in reg.list()} == {good_id, bad_id}

    assert main(["model", "list", *common[:4]]) == 0
    listing = capsys.readouterr().out
    assert f"* {good_id}" in listing

    assert main(["model", "rollback", *common]) == 0
    assert _model_id(gallery) == bad_id
    assert json.loads((gallery / "calibration.json").read_text()) == first_cal
    assert FeedbackStore(gallery / "state.sqlite").count() == 1
    capsys.readouterr()
    assert main(["model", "show", good_id[:20], "--registry", str(reg_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model_id"] == good_id
    assert [h["action"] for h in shown["history"]] == ["promote", "refused", "rollback"]


def test_rollback_without_history_fails(setup):
    gallery, _, reg_dir = setup
    assert main(["model", "rollback", "--gallery", str(gallery), "--registry", str(reg_dir)]) == 1


def test_an_interrupted_promotion_leaves_no_shadow_and_the_gallery_as_it_was(
    setup, models, monkeypatch
):
    gallery, queries, reg_dir = setup
    before = _model_id(gallery)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the candidate is being evaluated

    monkeypatch.setattr("training.shadow.DirShadow.evaluate", interrupted)
    argv = [
        "model", "promote", str(models[0]), "--eval-queries", str(queries),
        "--gallery", str(gallery), "--registry", str(reg_dir), "--quiet", "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 130
    assert not list(gallery.parent.glob(".gallery.promote-*"))
    assert _model_id(gallery) == before and len(Gallery.open(gallery)) == 9
