"""`gunmatch train --gallery` learns from the gallery's own feedback on either backend: a shared
gallery keeps it in PostgreSQL (issue #16: it used to be ignored there), an embedded one in
``state.sqlite``; ``--feedback-db`` still names another file."""

from __future__ import annotations

import json

import pytest

from gunmatch.cli import main
from gunmatch.feedback import gallery_feedback
from gunmatch.state import open_state
from index.feedback import FeedbackStore
from matcher import build_pretrained, save_checkpoint
from matcher.model import with_preprocess
from tests.helpers import build_gallery, varied_image, write_varied_tree
from tests.servers import imported
from training.feedback import gallery_samples

LABELS = ["barrel", "magazine", "spring"]


@pytest.fixture()
def shared_gallery(tmp_path, request):
    """(model dir, a 9-item gallery imported into PostgreSQL + Milvus, its items by label)."""
    model_dir = save_checkpoint(
        with_preprocess(build_pretrained(), input_size=64), tmp_path / "base"
    )
    src = write_varied_tree(tmp_path / "src", LABELS, 3)
    local = tmp_path / "local"
    items = build_gallery(local, model_dir, src)
    with imported(local, tmp_path / "shared", request) as gal:
        yield model_dir, gal, items


def test_train_learns_from_a_shared_gallerys_feedback(shared_gallery, tmp_path, capsys):
    model_dir, gal, items = shared_gallery
    state = open_state(gal)
    try:
        assert state.location.shared
        (gal / "feedback").mkdir()
        for name, label, seed in (("q1", "spring", 500), ("q2", "magazine", 501),
                                  ("q3", "barrel", 502)):  # fmt: skip
            varied_image(label, seed).save(gal / "feedback" / f"{name}.png")
        fb = state.feedback
        fb.add("a", "q1", "1" * 64, "feedback/q1.png", items["spring"].item_id, "correct")
        fb.add("a", "q2", "2" * 64, "feedback/q2.png", items["barrel"].item_id, "wrong",
               correct_label="magazine")  # fmt: skip
        fb.add("a", "q3", "3" * 64, "feedback/q3.png", items["spring"].item_id, "wrong")
    finally:
        state.close()
    assert not (gal / "state.sqlite").exists()  # nothing for the old code path to read

    found = gallery_feedback(gal)
    assert [r.query_id for r in found.rows] == ["q1", "q2", "q3"] and found.image_dir == gal
    samples = gallery_samples(gal, feedback=found)
    fb_samples = {s.path.name: s for s in samples if s.path.parent.name == "feedback"}
    assert len(samples) == 9 + 3
    assert (fb_samples["q1.png"].label, fb_samples["q1.png"].negatives) == ("spring", [])
    assert (fb_samples["q2.png"].label, fb_samples["q2.png"].negatives) == ("magazine", ["barrel"])
    assert (fb_samples["q3.png"].label, fb_samples["q3.png"].negatives) == ("", ["spring"])

    common = ["train", "--gallery", str(gal), "--base", str(model_dir), "--epochs", "1",
              "--aug-passes", "1", "--threads", "1", "--quiet", "--json"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "m1")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 12 and report["labels"] == LABELS

    # --feedback-db still wins: a file holding one verdict gives one feedback sample.
    other = tmp_path / "elsewhere"
    other.mkdir()
    varied_image("barrel", 600).save(other / "q9.png")
    store = FeedbackStore(other / "state.sqlite")
    store.add("b", "q9", "9" * 64, "q9.png", items["barrel"].item_id, "correct")
    store.close()
    argv = [*common, "--out", str(tmp_path / "m2"), "--feedback-db", str(other / "state.sqlite")]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 9 + 1
