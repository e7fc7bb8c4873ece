"""Screening thresholds from cleared scans: quantile maths, the file, fallbacks, the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from gunmatch.cli import main
from gunmatch.decision import (
    decide_score,
    most_severe,
    screening_calibration,
    screening_decision_fn,
)
from gunmatch.service import open_engine
from screening.calibration import (
    calibrate_screening,
    calibration_file,
    expected_rate,
    reached,
    scans_for_rate,
    threshold_above,
)
from screening.screen import ScreeningConfig, crop_side, screen_transmission
from tests.helpers import SCREEN_CFG as CFG

synth = pytest.importorskip("synth.xray")


def _cleared(n: int, seed0: int = 900) -> list[np.ndarray]:
    return [
        synth.render_parcel(seed0 + i, size=(400, 320), threat_kind=None, n_clutter=3).image
        for i in range(n)
    ]


@pytest.mark.parametrize("rate", [0.01, 0.025, 0.1, 0.25, 0.5])
def test_threshold_above_holds_the_rate_on_new_scans(rate):
    scores = np.random.default_rng(0).normal(size=40)
    t = threshold_above(scores, rate)
    k = reached(40, rate)
    # It sits just above the k-th highest score: k - 1 of them reach it ...
    assert np.sum(scores >= t) == k - 1 and np.sort(scores)[-k] < t
    # ... and a new score outranks k of the 41 with probability k / 41, at most the rate
    # where 40 scans are enough for it (the highest alone is 1 / 41 = 2.4%).
    assert expected_rate(40, rate) == k / 41
    assert (expected_rate(40, rate) <= rate) == (rate >= 1 / 41)
    # ... and the next score down would give more than the rate on new scans.
    assert k == 1 or (k + 1) / 41 > rate


def test_the_threshold_holds_the_rate_on_new_clean_scans_not_just_the_cleared_ones():
    # 40 cleared scans at 2.5% and 100 at 1%: the plain quantile (floor(rate n) of them may
    # reach it) lets about twice the rate of new ones through; the threshold keeps to it.
    rng = np.random.default_rng(1)
    for n, rate in ((40, 0.025), (100, 0.01)):
        fa = []
        for _ in range(2000):
            cleared, new = rng.normal(size=n), rng.normal(size=2000)
            fa.append(np.mean(new >= threshold_above(cleared, rate)))
            plain = np.sort(cleared)[n - int(np.floor(rate * n)) - 1]
            fa[-1] = (fa[-1], np.mean(new > plain))
        held, plain = np.mean(fa, axis=0)
        assert held == pytest.approx(expected_rate(n, rate), abs=0.002) and held <= rate + 0.001
        assert plain > 1.7 * rate
    assert scans_for_rate(0.01) == 99 and expected_rate(99, 0.01) == 0.01
    assert expected_rate(98, 0.01) > 0.01


def test_calibration_is_written_used_and_ignored_for_other_settings(engine, tmp_path):  # noqa: F811
    scans = _cleared(4)
    data = calibrate_screening(engine, scans, CFG, 0.25, 0.5, progress=False)
    try:
        assert calibration_file(engine).is_file()
        assert data["metrics"]["scans"] == 4 and data["metrics"]["alerts_on_cleared"] <= 1
        assert data["review_threshold"] <= data["alert_threshold"]
        cal = screening_calibration(engine, CFG)
        assert cal is not None and cal.calibrated
        assert cal.alert_threshold == pytest.approx(data["alert_threshold"])
        decide = screening_decision_fn(engine, CFG)
        for t in scans:
            score = screen_transmission(engine, t, 1, None, decide, CFG).score
            assert decide(score) == decide_score(score, cal)[0]
        assert decide(data["alert_threshold"]) == "alert"
        # The scan's verdict is its worst region's.
        res = screen_transmission(engine, scans[0], 1, None, decide, CFG)
        assert res.decision == most_severe(r.decision for r in res.regions)
        # Other settings, a foreign model id or a broken file: not this calibration.
        assert screening_calibration(engine, replace(CFG, score_k=2)) is None
        raw = json.loads(calibration_file(engine).read_text())
        calibration_file(engine).write_text(json.dumps({**raw, "model_id": "other"}))
        assert screening_calibration(engine, CFG) is None
        calibration_file(engine).write_text("{not json")
        assert screening_calibration(engine, CFG) is None
    finally:
        calibration_file(engine).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="false_alarm"):
        calibrate_screening(engine, scans, CFG, 0.2, 0.1, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        calibrate_screening(engine, scans[:1], CFG, progress=False)


def test_a_calibration_fits_crops_of_its_side_named_or_the_models(engine):  # noqa: F811
    scans = _cleared(3)
    side = crop_side(engine, replace(CFG, crop_size=None))
    try:
        calibrate_screening(engine, scans, replace(CFG, crop_size=None), 0.34, 0.67, False)
        assert screening_calibration(engine, replace(CFG, crop_size=side)) is not None
        assert screening_calibration(engine, replace(CFG, crop_size=side + 16)) is None
        # A file from before the key held the side says null for the model's side.
        raw = json.loads(calibration_file(engine).read_text())
        assert raw["screening"]["crop_size"] == side
        raw["screening"]["crop_size"] = None
        calibration_file(engine).write_text(json.dumps(raw))
        assert screening_calibration(engine, replace(CFG, crop_size=side)) is not None
        assert screening_calibration(engine, replace(CFG, crop_size=None)) is not None
        assert screening_calibration(engine, replace(CFG, crop_size=side + 16)) is None
    finally:
        calibration_file(engine).unlink(missing_ok=True)


def test_cli_calibrates_and_search_decides_with_it(engine, tmp_path, capsys):  # noqa: F811

    root = tmp_path / "g"
    engine.gallery.flush()
    shutil.copytree(engine.gallery.root, root)
    paths = []
    for i, t in enumerate(_cleared(3, 950)):
        paths.append(tmp_path / f"clear{i}.png")
        Image.fromarray((t * 255 + 0.5).astype(np.uint8), "L").save(paths[-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    common = ["--gallery", str(root), "--threads", "1", "--quiet"]
    argv = ["gallery", "calibrate-screening", *map(str, paths), str(bad), *common]
    assert main([*argv, "--false-alarm", "0.34", "--review-rate", "0.67"]) == 0
    text = capsys.readouterr().out
    assert "failed: " in text and "from 3 cleared scans (1 unreadable)" in text
    written = json.loads((root / "screening-calibration.json").read_text())
    assert written["screening"]["score_mode"] == "match"
    assert main(["search", str(paths[0]), "--gallery", str(root), "--json", "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    eng = open_engine(root)
    try:
        cal = screening_calibration(eng, ScreeningConfig())
    finally:
        eng.close()
    assert cal is not None
    # The JSON score is rounded to 4 places: compare away from the thresholds only.
    gaps = [abs(res["score"] - t) for t in (cal.alert_threshold, cal.review_threshold)]
    if min(gaps) > 1e-3:
        assert res["decision"] == decide_score(res["score"], cal)[0]
    with pytest.raises(SystemExit):
        main(["gallery", "calibrate-screening", str(paths[0]), *common, "--false-alarm", "0"])
    with pytest.raises(SystemExit):
        main(["gallery", "calibrate-screening", str(tmp_path / "missing.png"), *common])
