"""Evaluation metrics on a hand-built case with known answers, report files, calibration, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gunmatch.cli import main
from gunmatch.decision import parse_calibration
from matcher import Embedder, build_pretrained, load_model, save_checkpoint
from matcher.model import with_preprocess
from tests.helpers import write_varied_tree
from training.evaluate import compute_metrics, evaluate
from training.metrics import auc, operating_point, roc_curve, shared_pictures
from training.report import calibration_from_metrics, write_calibration, write_report

# 4 queries x 3 references; worked out by hand in the comments.
G_LABELS = ["a", "b", "a"]
Q_LABELS = ["a", "b", "b", "a"]
SIM = np.array(
    [
        [0.9, 0.5, 0.8],  # a: ranks 0,2,1 -> hit, hit, miss; AP = 1
        [0.7, 0.6, 0.1],  # b: ranks 0,1,2 -> miss, hit;       AP = 1/2
        [0.2, 0.9, 0.3],  # b: ranks 1,2,0 -> hit;             AP = 1
        [0.1, 0.7, 0.3],  # a: ranks 1,2,0 -> miss, hit, hit;  AP = (1/2 + 2/3) / 2
    ]
)


def test_retrieval_metrics_known_answers():
    m, roc = compute_metrics(SIM, Q_LABELS, G_LABELS)
    assert roc is None
    assert m["top1"] == 0.5
    assert m["recall@1"] == 0.5
    assert m["recall@5"] == 1.0
    assert m["map@10"] == pytest.approx((1 + 0.5 + 1 + (0.5 + 2 / 3) / 2) / 4)
    a_map, b_map = (1 + (0.5 + 2 / 3) / 2) / 2, (0.5 + 1) / 2
    assert m["per_label"] == {
        "a": {"accuracy": 0.5, "recall@5": 1.0, "map@10": pytest.approx(a_map), "queries": 2},
        "b": {"accuracy": 0.5, "recall@5": 1.0, "map@10": pytest.approx(b_map), "queries": 2},
    }
    assert m["confusion"] == {"labels": ["a", "b"], "matrix": [[1, 1], [1, 1]]}


def test_shared_pictures_bound_top1():
    # Group 0 is one picture filed under a, a and b (2 of 3 can be right), group 5 under
    # b and c (1 of 2); groups 3 and 4 hold one label each.
    groups = [0, 0, 0, 3, 3, 4, 5, 5]
    labels = ["a", "a", "b", "a", "a", "b", "b", "c"]
    assert shared_pictures(groups, labels) == {
        "pictures": 2,
        "queries": 5,
        "top1_ceiling": 1.0 - 2 / 8,
    }
    assert shared_pictures([1, 2], ["a", "a"])["top1_ceiling"] == 1.0


def test_threat_roc_known_answers():
    # Threat score = similarity to the only "b" reference: 0.5, 0.6, 0.9, 0.7.
    # Descending: 0.9 (threat), 0.7 (not), 0.6 (threat), 0.5 (not).
    m, roc = compute_metrics(SIM, Q_LABELS, G_LABELS, ["b"])
    t = m["threat"]
    assert (t["positives"], t["negatives"]) == (2, 2)
    np.testing.assert_allclose(roc["fpr"], [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc["tpr"], [0, 0.5, 0.5, 1, 1])
    assert t["auc"] == pytest.approx(0.75)
    assert t["alert"] == {"threshold": 0.9, "tpr": 0.5, "fpr": 0.0, "max_fpr": 0.01}
    assert operating_point(roc, 0.5)["threshold"] == 0.6
    assert operating_point(roc, 0.5)["tpr"] == 1.0


def test_roc_ties_and_perfect_separation():
    roc = roc_curve(np.array([0.8, 0.8, 0.1]), np.array([True, False, False]))
    np.testing.assert_allclose(roc["fpr"], [0, 0.5, 1])  # tied scores form one point
    assert auc(roc["fpr"], roc["tpr"]) == pytest.approx(0.75)
    perfect = roc_curve(np.array([0.9, 0.8, 0.2]), np.array([True, True, False]))
    assert auc(perfect["fpr"], perfect["tpr"]) == 1.0
    with pytest.raises(ValueError):
        roc_curve(np.array([0.5]), np.array([True]))


def test_calibration_is_accepted_by_the_service(tmp_path):
    m, _ = compute_metrics(SIM, Q_LABELS, G_LABELS, ["b"])
    m["model_id"] = "efficientnet_lite0-abc"
    cal = calibration_from_metrics(m, "test")
    assert cal["alert_threshold"] == 0.9 and cal["review_threshold"] == 0.9
    path = write_calibration(m, tmp_path / "calibration.json", "test")
    parsed = parse_calibration(json.loads(path.read_text()), "efficientnet_lite0-abc")
    assert parsed.calibrated and parsed.alert_threshold == 0.9
    with pytest.raises(ValueError):
        calibration_from_metrics(compute_metrics(SIM, Q_LABELS, G_LABELS)[0], "x")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """ImageNet lite0 at 64 px input (fast), saved as a model directory."""
    model = with_preprocess(build_pretrained(), input_size=64)
    return save_checkpoint(model, tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    labels = ["barrel", "magazine", "spring"]
    return write_varied_tree(root / "g", labels, 3), write_varied_tree(root / "q", labels, 2)


def test_evaluate_folders_and_report(small_model, sets, tmp_path):
    g, q = sets
    ev = evaluate(g, q, Embedder(load_model(small_model), threads=1), ["barrel"])
    m = ev.metrics
    assert m["queries"] == 6 and m["gallery_items"] == 9
    assert 0.0 <= m["top1"] <= m["recall@5"] <= 1.0
    out = write_report(ev, tmp_path / "report")
    for name in ("metrics.json", "report.md", "confusion.png", "roc.png", "embeddings.npz"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["top1"] == m["top1"] and saved["threat"]["labels"] == ["barrel"]
    assert "top-1 accuracy" in (out / "report.md").read_text()
    assert np.load(out / "embeddings.npz")["query_vectors"].shape == (
        6,
        ev.gallery.vectors.shape[1],
    )


def test_eval_cli(small_model, sets, tmp_path, capsys):
    g, q = sets
    cal = tmp_path / "cal.json"
    rc = main(
        [
            "eval",
            "--gallery-src",
            str(g),
            "--queries",
            str(q),
            "--model",
            str(small_model),
            "--threat-labels",
            "barrel",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
            "--threads",
            "1",
            "--write-calibration",
            str(cal),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "threat AUC" in text
    assert "filed under several labels" not in text
    assert json.loads(cal.read_text())["model_id"].startswith("efficientnet_lite0-")
    assert (tmp_path / "r" / "roc.png").is_file()


def test_eval_counts_a_picture_filed_under_two_labels(small_model, sets, tmp_path, capsys):
    g, q = sets[0], shutil.copytree(sets[1], tmp_path / "q")
    wall = next((q / "barrel").iterdir())
    other = next(p for p in q.iterdir() if p.is_dir() and p.name != "barrel")
    (other / f"copy-{wall.name}").write_bytes(wall.read_bytes())
    args = ["eval", "--gallery-src", str(g), "--queries", str(q), "--model", str(small_model)]
    assert main([*args, "--quiet", "--threads", "1", "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "2 queries are 1 picture filed under several labels" in text
    assert "at most 0.8571" in text  # 7 queries, one of the two copies must miss
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["shared_pictures"] == {"pictures": 1, "queries": 2, "top1_ceiling": 1 - 1 / 7}
    assert "filed under several labels" in (tmp_path / "r" / "report.md").read_text()


def test_eval_cli_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--gallery-src", str(tmp_path / "nope"), "--queries", str(tmp_path)])
    assert exc.value.code == 2
