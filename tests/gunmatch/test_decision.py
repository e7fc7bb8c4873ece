"""Alert / review / clear decisions and calibration loading (no model needed)."""

from __future__ import annotations

import json
import logging

import pytest

from gunmatch.decision import (
    DEFAULT_ALERT_THRESHOLD,
    DEFAULT_REVIEW_THRESHOLD,
    calibration_path,
    compare_verdict,
    decide,
    decide_score,
    load_calibration,
    most_severe,
    parse_calibration,
)

CAL = {"model_id": "m1", "alert_threshold": 0.8, "review_threshold": 0.6, "created_at": "t",
       "source": "eval", "metrics": {"recall": 0.9}}  # fmt: skip


def test_thresholds_cut_at_alert_and_review():
    cal = parse_calibration(CAL, "m1")
    assert decide_score(0.8, cal) == ("alert", 0.8)
    assert decide_score(0.79, cal) == ("review", 0.6)
    assert decide_score(0.6, cal) == ("review", 0.6)
    assert decide_score(0.59, cal) == ("clear", 0.6)
    assert decide_score(None, cal) == ("clear", None)
    assert decide_score(float("nan"), cal)[0] == "clear"


def test_only_threat_matches_count():
    cal = parse_calibration(CAL, "m1")
    matches = [{"score": 0.99, "threat": False}, {"score": 0.7, "threat": True, "label": "t"}]
    d = decide(matches, cal)
    assert d.decision == "review" and d.best_threat["label"] == "t" and d.calibrated
    assert decide([{"score": 0.99, "threat": False}], cal).decision == "clear"


def test_missing_or_foreign_calibration_falls_back_to_safe_defaults(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cal = load_calibration(tmp_path / "calibration.json", "m1")
    assert not cal.calibrated and "no calibration" in caplog.text
    assert cal.review_threshold == DEFAULT_REVIEW_THRESHOLD < DEFAULT_ALERT_THRESHOLD
    path = calibration_path(tmp_path)
    path.write_text(json.dumps(CAL))
    assert load_calibration(path, "m1").alert_threshold == 0.8
    other = load_calibration(path, "m2")
    assert not other.calibrated and "not 'm2'" in other.source
    path.write_text("{not json")
    assert not load_calibration(path, "m1").calibrated
    path.write_text(json.dumps({**CAL, "review_threshold": 0.9}))
    assert not load_calibration(path, "m1").calibrated
    assert calibration_path(tmp_path, tmp_path / "x.json") == tmp_path / "x.json"


def test_defaults_prefer_review_to_clear():
    cal = load_calibration("/nonexistent/calibration.json", "m")
    # a middling threat similarity is sent to a person, not cleared
    assert decide_score(0.55, cal)[0] == "review"


@pytest.mark.parametrize(
    "sim,verdict", [(0.95, "match"), (0.7, "possible_match"), (0.1, "different")]
)
def test_compare_verdict(sim, verdict):
    assert compare_verdict(sim, parse_calibration(CAL, "m1")) == verdict


def test_most_severe():
    assert most_severe(["clear", "review"]) == "review"
    assert most_severe(["review", "alert", "clear"]) == "alert"
    assert most_severe([]) == "clear"
