"""benchmarks.xray_adapt: a station's cleared scans in its look, adapt through the CLI, rows
screened before and after."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import xray_adapt, xray_domain
from benchmarks.xray_screening import gallery_text
from gunmatch.commands import adapt as adapt_command
from gunmatch.maps import install_threatmap
from index import Gallery
from matcher.threatmap import load_threatmap
from training.xray.adapt import AdaptConfig, mix_heads


def test_cleared_scans_are_clean_exports_in_the_station_look(tmp_path):
    rows = {r.name: r for r in xray_domain.plan_rows(["dual-energy-vivid"])}
    xray_adapt.write_cleared(tmp_path / "vivid", rows["dual-energy-vivid"], 2, (256, 200))
    xray_adapt.write_cleared(tmp_path / "default", rows["default"], 2, (256, 200))
    vivid = sorted((tmp_path / "vivid").glob("*.png"))
    assert [p.name for p in vivid] == ["cleared-0000.png", "cleared-0001.png"]
    colour = np.asarray(Image.open(vivid[0]).convert("RGB")).astype(int)
    grey = np.asarray(Image.open(tmp_path / "default" / "cleared-0000.png").convert("RGB"))
    # a dual-energy export is pseudo-colour; the default generator's is grey
    assert np.abs(colour[..., 0] - colour[..., 2]).max() > 40
    assert np.ptp(grey.astype(int), axis=2).max() == 0


def test_the_fine_tuned_head_alone_is_recovered_from_the_installed_mix(mapped_gallery, tiny_map):
    # As adapt installs it: a quarter of the base map's head mixed into the fine-tuned one,
    # the base kept as the previous map.
    tuned = load_threatmap(tiny_map[0])
    with torch.no_grad():
        for name, weight in tuned.named_parameters():
            if not name.startswith("trunk."):
                weight.add_(torch.randn_like(weight))
    expected = {k: v.clone() for k, v in tuned.state_dict().items()}
    with Gallery.open(mapped_gallery) as g:
        install_threatmap(g, mix_heads(tuned, load_threatmap(tiny_map[0]), 0.25))
    xray_adapt.install_fine_tuned_alone(mapped_gallery, 0.25)
    with Gallery.open(mapped_gallery) as g:
        alone = load_threatmap(g.threatmap_dir).state_dict()
    for k, v in expected.items():
        np.testing.assert_allclose(alone[k].numpy(), v.numpy(), atol=1e-5)


def _screened(threat: list[float], clean: list[float]) -> dict:
    return {"scores": {"threat": threat, "clean": clean}}


def test_the_change_in_detection_comes_with_a_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    threat, clean = list(rng.normal(1.0, 1.0, 60)), list(rng.normal(0.0, 1.0, 60))
    before = _screened(threat, clean)
    # The same scores twice: no change, and every draw agrees.
    assert xray_adapt.detection_change(before, before) == (0.0, 0.0, 0.0)
    # Every threat bag lifted above every clean one: the change is what detection lacked,
    # and the interval lies above zero around it.
    after = _screened([t + 10.0 for t in threat], clean)
    missed = np.mean(np.array(threat) <= max(clean))
    change, low, high = xray_adapt.detection_change(before, after)
    assert change == pytest.approx(missed) and 0.0 < low <= change <= high <= 1.0
    # One clean bag that looks like a threat sets the threshold alone: the interval is wide
    # and holds both no change and the loss it caused.
    spiked = _screened(threat, [*clean[:-1], 2.5])
    change, low, high = xray_adapt.detection_change(before, spiked)
    assert change < 0.0 and low <= change and high >= 0.0
    with pytest.raises(ValueError, match="same, non-empty"):
        xray_adapt.detection_change(before, _screened(threat[:-1], clean))


def test_a_station_is_a_look_or_a_clutter_family():
    for name in ("classic", "nonsense"):  # the classic scene is the default look's
        with pytest.raises(SystemExit, match="must be a look or a scene"):
            xray_adapt.main(["--station", name])
    assert {"dense", "noisy-lowres", "default"} <= set(xray_adapt.stations())
    # A station of a clutter family: its bags hold that scene, each scanned in a look the
    # models were trained on; the heading and the station line say which it stands for.
    held = ["dual-energy-vivid", "dense"]
    rows = {r.name: r for r in xray_domain.chosen_rows(held, ["dense", "default"])}
    styles = [rows["dense"].style_of(xray_adapt.CLEARED_SEED + i) for i in range(20)]
    assert {s.scene.name for s in styles} == {"dense"}
    looks = {s.look.name for s in styles}
    assert len(looks) > 1 and not looks & set(held)
    assert xray_adapt.title("dense", "hand", 100, True) == (
        "## X-ray station adaptation: dense (a clutter family held out from training), "
        "100 cleared scans"
    )
    assert xray_adapt.title("noisy-lowres", None, 200, False) == (
        "## X-ray station adaptation: noisy-lowres (a trained look), bags holding a part"
    )
    assert "dense scene (its clutter family" in xray_adapt.station_text("dense")
    assert "noisy-lowres look (scenes drawn" in xray_adapt.station_text("noisy-lowres")


def test_a_clutter_family_station_may_have_one_look():
    # A scene station's scanner: --look gives every parcel that look (a look station or an
    # unknown look is refused before anything runs).
    for argv in (["--station", "noisy-lowres", "--look", "grey-highres"],
                 ["--station", "dense", "--look", "tools"]):  # fmt: skip
        with pytest.raises(SystemExit, match="--look goes with a scene"):
            xray_adapt.main(argv)
    held = ["dual-energy-vivid", "dense"]
    row = xray_adapt.station_row(held, "dense", "dual-energy-vivid")
    styles = [row.style_of(xray_adapt.CLEARED_SEED + i) for i in range(20)]
    assert {(s.look.name, s.scene.name) for s in styles} == {("dual-energy-vivid", "dense")}
    assert row.name == "dense in dual-energy-vivid" and row.held_out
    # Held out if either is; the heading says which of the two the models saw.
    assert xray_adapt.station_row(["dense"], "dense", "grey-highres").held_out
    # A trained scene too (a scene station without a look must be held out: its row is one
    # of benchmarks.xray_domain's held-out rows).
    assert xray_adapt.station_row(held, "tools", "dual-energy-vivid").held_out
    assert not xray_adapt.station_row(held, "tools", "grey-highres").held_out
    assert xray_adapt.held_out(held, "dense") and not xray_adapt.held_out(held, "grey-highres")
    assert xray_adapt.title("dense", "hand", 100, True, "grey-highres", False) == (
        "## X-ray station adaptation: dense in grey-highres (a clutter family held out from "
        "training, scanned in a trained look), 100 cleared scans"
    )
    assert xray_adapt.title("dense", None, 200, True, "dual-energy-vivid", True) == (
        "## X-ray station adaptation: dense in dual-energy-vivid (a clutter family held out "
        "from training, scanned in a look held out from training), bags holding a part"
    )
    assert xray_adapt.station_text("dense", "grey-highres") == (
        "of the dense scene (its clutter family), each scanned in the grey-highres look"
    )
    assert (
        xray_adapt.section_name("dense", "hand", 100, True, "dual-energy-vivid")
        == "adapt-dense-in-dual-energy-vivid-held-out-cleared-100"
    )
    # Without a look, a station's row is benchmarks.xray_domain's.
    assert xray_adapt.station_row(held, "dense").name == "dense"


@pytest.mark.slow  # a whole adaptation and four screened rows: about a minute on 2 cores
def test_tiny_run_adapts_through_the_cli_and_screens_before_and_after(monkeypatch, tiny_map):
    # A gate that accepts whatever it measures, so the fine-tuned head alone is screened too.
    quick = replace(
        AdaptConfig(), epochs=1, gate_parcels=6, holdout=0.5, gate_margin=1.0, require_gain=False
    )
    monkeypatch.setattr(adapt_command, "AdaptConfig", lambda: quick)
    args = xray_adapt.parser().parse_args(
        ["--station", "noisy-lowres", "--held-out", "noisy-lowres", "--cleared", "6",
         "--minutes", "30", "--positives", "2", "--negatives", "2", "--size", "320x250",
         "--refs-per-kind", "1", "--benign-refs", "1", "--augment", "0", "--crop", "64",
         "--regions", "8", "--map-zooms", "1", "--map-views", "1", "--threads", "1",
         "--threatmap", str(tiny_map[0])]
    )  # fmt: skip
    res = xray_adapt.run(args)
    assert (
        [r["row"] for r in res["before"]]
        == [r["row"] for r in res["after"]]
        == [
            "default",
            "noisy-lowres",
        ]
    )
    assert res["held_out"] and res["exit"] == 0 and res["report"]["gate"]["accepted"]
    assert res["report"]["training_scans"] + res["report"]["held_out_scans"] == 6
    # Accepted, the rows are screened with the fine-tuned head alone too.
    assert [r["row"] for r in res["alone"]] == ["default", "noisy-lowres"]
    text = xray_adapt.markdown(args, res, "cmd", "machine at start")
    assert "held out from training" in text and "| noisy-lowres |" in text
    # The machine line is the one taken as the run began (main takes it before run).
    assert "\nMachine: machine at start  \n" in text
    # A station of another size than the default's says so in its title, as in its section name.
    assert text.splitlines()[0] == (
        "## X-ray station adaptation: noisy-lowres (a look held out from training), "
        "bags holding a part, 6 cleared scans"
    )
    assert "fine-tuned alone: detection" in text and "0.5 x the base map's" in text
    # The gallery in the words every X-ray section uses, its threat map named.
    assert f"Gallery {gallery_text(args)}; crops" in text and "threat map " in gallery_text(args)
    assert "change at 1% FA |" in text and "change at 1% FA from before |" in text
    # The station's own measure, small parts and larger objects apart, as adapt measured it.
    station = res["report"]["after"]["station"]
    assert "small parts " in text and "larger objects " in text
    for key in ("auc_small", "auc_large"):
        assert station[key] is None or f"-> {station[key]:.3f}" in text
    # Which epoch adapt kept, of those it trained.
    rep = res["report"]
    assert f"it kept epoch {rep['best_epoch']} of the {rep['epochs_trained']} it trained" in text
    # Adapt calibrated with the service's settings (crops at the model's side), not this
    # run's 64 px crops: no row is judged at thresholds measured on another scale.
    assert all(r["thresholds"] is None for r in res["after"])
    assert "clean bags alerting" not in text


def test_the_station_thresholds_judge_the_bags_after_adapting():
    scores = {"clean": [0.1, 0.5, 2.2, 0.3], "threat": [2.5, 1.9, 3.0, 0.2]}
    row = {"row": "dense", "scores": scores, "thresholds": (2.0, 1.0)}
    assert xray_adapt.at_thresholds(row) == {
        "clean_alert": 0.25, "threat_alert": 0.5, "clean_review": 0.25, "threat_review": 0.75,
    }  # fmt: skip
    assert xray_adapt.at_thresholds({**row, "thresholds": None}) is None
    metrics = {"scans": 100, "expected_false_alarm": 1 / 101, "expected_review_rate": 5 / 101,
               "false_alarm": 0.01, "review_rate": 0.05}  # fmt: skip
    cal = {"alert_threshold": 2.0, "review_threshold": 1.0, "metrics": metrics,
           "scans": {"held_out": 67, "left_out": 0, "unread": 33}}  # fmt: skip
    lines = xray_adapt.station_thresholds({"screening_calibration": cal}, [row])
    text = "\n".join(lines)
    assert "on 100 cleared scans training never saw (67 held out, 33 not read for training)" in (
        text
    )
    assert "expected to stop 0.99% of new clean parcels (asked 1%)" in text
    assert "| dense | 0.250 | 0.500 | 0.250 | 0.750 |" in text
    # refused (no calibration) or no row screened at its settings: nothing to say
    assert xray_adapt.station_thresholds({}, [row]) == []
    assert xray_adapt.station_thresholds({"screening_calibration": cal}, [
        {**row, "thresholds": None}]) == []  # fmt: skip


def test_each_kind_of_positive_keeps_its_own_section():
    names = {g: xray_adapt.section_name("noisy-lowres", g) for g in (None, "hand", "long")}
    assert names == {
        None: "adapt-noisy-lowres-parts",
        "hand": "adapt-noisy-lowres",
        "long": "adapt-noisy-lowres-long-guns",
    }
    # Another station size gets its own section, so it never overwrites the default's; nor
    # does a look the models were trained on overwrite the same look held out from training.
    assert xray_adapt.section_name("grey-highres", "hand", 100) == "adapt-grey-highres-cleared-100"
    assert (
        xray_adapt.section_name("grey-highres", "hand", 100, held_out=True)
        == "adapt-grey-highres-held-out-cleared-100"
    )
    assert xray_adapt.section_name("dual-energy-vivid", "hand", held_out=True) == (
        "adapt-dual-energy-vivid-held-out"
    )
