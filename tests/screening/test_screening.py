"""Region screening of generated X-ray scans: boxes, matches, decisions, inputs, CLI JSON."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from gunmatch.cli import main
from gunmatch.decision import (
    DECISIONS,
    decision_fn,
    gallery_calibration,
    most_severe,
    threshold_decision_fn,
)
from gunmatch.search import SearchOptions
from index import best_per_item
from screening.regions import ProposalConfig, iou
from screening.screen import (
    ScreeningConfig,
    crop_transmission,
    screen_image,
    screen_transmission,
)
from synth.detector import pseudo_colour
from tests.helpers import SCREEN_CFG as CFG
from tests.helpers import xray_png


def test_region_search_finds_the_projected_reference(engine, scan):
    image, gt = scan
    res = screen_transmission(engine, image, 3, None, threshold_decision_fn(0.9, 0.5), CFG)
    assert res.width == 480 and res.height == 380
    assert 1 <= len(res.regions) <= CFG.max_regions
    best = res.regions[0]
    assert best.threat_match is not None and best.threat_match.item.label == "slide"
    assert iou(np.array([best.box], float), gt)[0, 0] >= 0.3
    assert best.threat_score == pytest.approx(res.score)
    scores = [r.threat_score for r in res.regions]
    assert scores == sorted(scores, reverse=True)


def test_decisions_follow_thresholds_and_worst_region(engine, scan):
    image, _ = scan
    always = screen_transmission(engine, image, 2, None, threshold_decision_fn(-1, -1), CFG)
    assert always.decision == "alert" and {r.decision for r in always.regions} == {"alert"}
    never = screen_transmission(engine, image, 2, None, threshold_decision_fn(2, 2), CFG)
    assert never.decision == "clear"
    mid = (always.score or 0) - 1e-3
    res = screen_transmission(engine, image, 2, None, threshold_decision_fn(mid, mid - 0.5), CFG)
    assert res.regions[0].decision == "alert"
    assert res.decision == most_severe(r.decision for r in res.regions) == "alert"
    with pytest.raises(ValueError):
        threshold_decision_fn(0.5, 0.9)


def test_to_dict_shape_is_json(engine, scan):
    image, _ = scan
    d = screen_transmission(engine, image, 2, None, threshold_decision_fn(0.9, 0.5), CFG).to_dict()
    json.dumps(d)
    assert d["decision"] in DECISIONS
    assert {"regions", "decision", "score", "width", "height", "model_id"} <= set(d)
    for r in d["regions"]:
        x, y, w, h = r["box"]
        assert all(isinstance(v, int) for v in r["box"])
        assert x >= 0 and y >= 0 and x + w <= 480 and y + h <= 380 and w > 0 and h > 0
        assert r["decision"] in DECISIONS
        assert 1 <= len(r["matches"]) <= 2
        assert {"item_id", "label", "score", "threat"} <= set(r["matches"][0])


@pytest.mark.parametrize("export", ["grey8", "grey16", "pseudo"])
def test_screen_image_reads_station_exports(engine, scan, export):
    image, gt = scan
    if export == "pseudo":
        low = image**1.8  # rough low-energy channel: denser is darker still
        data = io.BytesIO()
        Image.fromarray(pseudo_colour(image, low)).save(data, "PNG")
        data = data.getvalue()
    else:
        data = xray_png(image, "I;16" if export == "grey16" else "L")
    res = screen_image(engine, io.BytesIO(data), 2, None, threshold_decision_fn(0.9, 0.5), CFG)
    boxes = np.array([r.box for r in res.regions], float)
    assert iou(boxes, gt)[:, 0].max() >= 0.3
    assert set(res.timings_ms) >= {"decode_ms", "propose_ms", "embed_ms", "search_ms"}


def test_screen_image_uses_gallery_calibration(engine, scan):
    image, _ = scan
    cal = {"model_id": engine.embedder.model_id, "alert_threshold": -1.0, "review_threshold": -2.0}
    path = engine.gallery.root / "calibration.json"
    path.write_text(json.dumps(cal))
    try:
        decide = decision_fn(gallery_calibration(engine))
        res = screen_image(engine, io.BytesIO(xray_png(image)), 1, None, decide, CFG)
    finally:
        path.unlink()
    assert res.decision == "alert"


def test_crop_outside_scan_is_empty_belt():
    t = np.zeros((10, 10), np.float32)
    crop = crop_transmission(t, np.array([5, 5, 10, 10]), 10)
    assert crop[:5, :5].max() == 0.0 and crop[5:, 5:].min() == 1.0


def test_bad_k_and_bad_image(engine):
    with pytest.raises(ValueError):
        screen_transmission(engine, np.ones((50, 50), np.float32), 0, None, lambda s: "clear")
    with pytest.raises(ValueError):
        screen_image(engine, io.BytesIO(b"not an image"), 1, None, lambda s: "clear")


def test_cli_search_regions_json(engine, scan, tmp_path, capsys):
    image, gt = scan
    path = tmp_path / "scan.png"
    path.write_bytes(xray_png(image))
    engine.gallery.flush()
    code = main(
        [
            "search",
            "--regions",
            "--json",
            "--k",
            "2",
            "--threads",
            "1",
            "--gallery",
            str(engine.gallery.root),
            str(path),
        ]
    )
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["query"] == str(path)
    assert line["decision"] in DECISIONS and line["regions"]
    assert all(len(r["box"]) == 4 for r in line["regions"])


def _cli_json(engine, path, *flags):
    engine.gallery.flush()
    args = ["search", *flags, "--json", "--k", "3", "--threads", "1"]
    code = main([*args, "--gallery", str(engine.gallery.root), str(path)])
    assert code == 0
    return code


def test_cli_xray_gallery_screens_regions_by_default(engine, scan, tmp_path, capsys):
    image, _ = scan
    path = tmp_path / "scan.png"
    path.write_bytes(xray_png(image))
    _cli_json(engine, path)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["regions"] and line["decision"] in DECISIONS
    # Standard top-level matches: same schema as whole-image search, best per item, sorted.
    matches = line["matches"]
    assert [m["rank"] for m in matches] == [1, 2, 3]
    assert {"rank", "item_id", "label", "category", "threat", "score"} <= set(matches[0])
    assert len({m["item_id"] for m in matches}) == 3
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)
    for r in line["regions"]:
        for rm in r["matches"]:
            same = [m for m in matches if m["item_id"] == rm["item_id"]]
            assert not same or same[0]["score"] >= rm["score"] - 1e-4
    _cli_json(engine, path, "--no-regions")
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "regions" not in plain and len(plain["matches"]) == 3


def test_use_regions_defaults_to_modality():
    assert SearchOptions().use_regions("xray") and not SearchOptions().use_regions("photo")
    assert SearchOptions(regions=True).use_regions("photo")
    assert not SearchOptions(regions=False).use_regions("xray")


def test_best_per_item_keeps_each_items_best_score(engine, scan):
    image, _ = scan
    res = screen_transmission(engine, image, 4, None, threshold_decision_fn(0.9, 0.5), CFG)
    assert [m.rank for m in res.matches] == [1, 2, 3, 4]
    merged = best_per_item([res.matches[2], *res.matches[:2], res.matches[2]], 2)
    assert [m.item.item_id for m in merged] == [m.item.item_id for m in res.matches[:2]]
    assert [m.rank for m in merged] == [1, 2]
    for r in res.regions:
        for m in r.matches:
            best = next(b for b in res.matches if b.item.item_id == m.item.item_id)
            assert best.score >= m.score - 1e-6


def test_margin_mode_discounts_benign_lookalikes(engine, scan):
    image, _ = scan
    decide = threshold_decision_fn(0.9, 0.5)
    match = screen_transmission(engine, image, 4, None, decide, CFG)
    margin_cfg = ScreeningConfig(
        proposals=CFG.proposals, max_regions=CFG.max_regions, score_mode="margin"
    )
    margin = screen_transmission(engine, image, 4, None, decide, margin_cfg)
    for r in margin.regions:
        benign = [m.score for m in r.matches if not m.item.threat]
        assert benign, "k=4 over a 4-item gallery shows every reference"
        assert r.threat_score == pytest.approx(r.threat_match.score - max(benign), abs=1e-3)
    assert margin.score < match.score


def test_margin_score_averages_the_k_best_references_on_each_side(engine, scan):
    image, _ = scan
    cfg = ScreeningConfig(
        proposals=ProposalConfig(max_regions=6), score_mode="margin", score_k=2, max_regions=6
    )
    res = screen_transmission(engine, image, 4, None, threshold_decision_fn(0.9, 0.5), cfg)
    assert res.regions
    for r in res.regions:
        threat = sorted((m.score for m in r.matches if m.item.threat), reverse=True)[:2]
        benign = sorted((m.score for m in r.matches if not m.item.threat), reverse=True)[:2]
        assert r.threat_score == pytest.approx(np.mean(threat) - np.mean(benign), abs=1e-4)
    one = replace(cfg, score_k=1)
    res1 = screen_transmission(engine, image, 4, None, threshold_decision_fn(0.9, 0.5), one)
    r = res1.regions[0]
    best_t = max(m.score for m in r.matches if m.item.threat)
    best_b = max(m.score for m in r.matches if not m.item.threat)
    assert r.threat_score == pytest.approx(best_t - best_b, abs=1e-4)
    with pytest.raises(ValueError, match="score_k"):
        screen_transmission(engine, image, 1, None, lambda s: "clear", replace(cfg, score_k=0))


def test_cli_score_mode_and_proposal_flags(engine, scan, tmp_path, capsys):
    image, _ = scan
    path = tmp_path / "scan.png"
    path.write_bytes(xray_png(image))
    _cli_json(engine, path, "--proposals", "5")
    match = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _cli_json(engine, path, "--proposals", "5", "--score-mode", "margin", "--score-k", "2")
    margin = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert match["proposals"] == margin["proposals"] == 5
    # Margin subtracts the benign side, so the same scan scores lower than by plain match.
    assert margin["score"] < match["score"]
    with pytest.raises(SystemExit):
        main(["search", "--score-k", "0", "--gallery", str(engine.gallery.root), str(path)])
