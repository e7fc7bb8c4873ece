"""The thresholds benchmark: draws of cleared scans, both rules, the section, the screening."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import xray_thresholds


def _pool(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=800), rng.normal(size=100) + 3.0


def test_the_plain_quantile_lets_about_twice_the_rate_through_where_rate_n_is_one():
    clean, threat = _pool()
    (row,) = xray_thresholds.compare(clean, threat, [100], [0.01], 1000)
    plain, held = row["plain quantile"], row["threshold_above"]
    assert row["expected"] == pytest.approx(1 / 101)
    assert plain["fa"] > 1.6 * 0.01 and held["fa"] == pytest.approx(1 / 101, abs=0.003)
    assert plain["over_2x"] > held["over_2x"]
    # the price of the higher threshold: fewer threat bags reach it
    assert plain["det"] > held["det"]
    assert held["fa_lo"] <= held["fa"] <= held["fa_hi"]


def test_below_the_scans_a_rate_needs_both_rules_take_the_highest():
    clean, threat = _pool(1)
    (row,) = xray_thresholds.compare(clean, threat, [67], [0.01], 300)
    assert row["plain quantile"] == row["threshold_above"]
    assert row["expected"] == pytest.approx(1 / 68)


def test_a_draw_needs_clean_bags_left_to_count_false_alarms_on():
    clean, threat = _pool()
    with pytest.raises(ValueError, match="0 < n < 800"):
        xray_thresholds.draws(clean, threat, 800, 0.01, xray_thresholds.threshold_above, 5)


def test_the_section_screens_one_station_row_once_and_reads_saved_scores(monkeypatch, tmp_path):
    clean, threat = _pool(2)
    seen = []

    def run(args):
        seen.append(args)
        return [{"scores": {"clean": clean.tolist(), "threat": threat.tolist()}}]

    monkeypatch.setattr(xray_thresholds.xray_domain, "run", run)
    printed = []
    monkeypatch.setattr(xray_thresholds, "publish", lambda text, name, w: printed.append(name))
    saved = tmp_path / "scores.json"
    argv = ["--station", "dense", "--guns", "--negatives", "800", "--model", "models/xray-v1"]
    argv += ["--draws", "50", "--save-scores", str(saved)]
    assert xray_thresholds.main(argv) == 0
    (args,) = seen  # the options this benchmark does not know went to xray_domain
    assert args.only == ["dense"] and args.held_out == ["none"] and args.guns == "hand"
    assert args.negatives == 800 and args.model == "models/xray-v1"
    assert json.loads(saved.read_text())["clean"] == clean.tolist()
    # a second run reads the pool back without screening
    assert xray_thresholds.main(["--scores", str(saved), "--draws", "50"]) == 0
    assert len(seen) == 1 and printed == ["thresholds-dense"] * 2
    args = xray_thresholds.parser().parse_args(["--scores", str(saved)])
    rows = xray_thresholds.compare(clean, threat, [40, 100], [0.025], 50)
    text = xray_thresholds.markdown(json.loads(saved.read_text()), rows, args, "cmd", "now")
    assert "| 2.5% | 40 | 2.44% |" in text and "scores read from" in text
