"""`gunmatch adapt` on a gallery: install and recalibrate when accepted, change nothing when not."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from gunmatch import adapt as adapt_module
from gunmatch.adapt import (
    REPORT_FILE,
    AdaptJob,
    adapt_gallery,
    cleared_scans,
    station_change,
    threshold_scans,
)
from gunmatch.cli import main
from gunmatch.maps import PREVIOUS
from gunmatch.search import new_query_id
from gunmatch.service import open_engine
from gunmatch.state import AuditLog, load_keyring, state_db_path
from index import Gallery
from index.feedback import FeedbackStore
from matcher.threatmap import load_threatmap
from screening.calibration import SCREENING_CALIBRATION_FILE
from tests.helpers import SCREEN_CFG, cleared_pngs
from training.xray.adapt import AdaptConfig, AdaptResult, Costs

QUICK = AdaptConfig(epochs=2, gate_parcels=6, holdout=0.5, minutes=30)


def _open(d):
    return open_engine(d, threads=1)


def test_accepted_adaptation_installs_the_map_and_measures_thresholds(mapped_gallery):
    gallery = mapped_gallery
    before = load_threatmap(gallery / "model" / "threatmap").map_id
    cfg = replace(QUICK, gate_margin=1.0, require_gain=False)  # accept whatever it learns
    report = adapt_gallery(gallery, cleared_pngs(6), cfg, SCREEN_CFG, 0.25, 0.5, progress=False,
                           opener=_open)  # fmt: skip
    assert report["gate"]["accepted"] and report["base"] == "gallery"
    tmap = load_threatmap(gallery / "model" / "threatmap")
    assert tmap.map_id == report["installed_map_id"] != before
    assert load_threatmap(gallery / "model" / PREVIOUS).map_id == before
    cal = json.loads((gallery / SCREENING_CALIBRATION_FILE).read_text())
    assert cal["metrics"]["scans"] == report["held_out_scans"] == 3
    # every scan read and used: nothing beside the held-out ones for the thresholds
    assert report["screening_calibration"]["scans"] == {"held_out": 3, "left_out": 0, "unread": 0}
    assert cal["screening"]["threatmap"]["id"] == tmap.map_id
    assert report["screening_calibration"]["alert_threshold"] == cal["alert_threshold"]
    assert json.loads((gallery / REPORT_FILE).read_text())["installed_map_id"] == tmap.map_id
    # Undone as the README says: the previous map goes back, the adapted one becomes previous.
    prev = gallery / "model" / PREVIOUS
    assert main(["gallery", "threatmap", str(prev), "--gallery", str(gallery)]) == 0
    assert load_threatmap(gallery / "model" / "threatmap").map_id == before
    assert load_threatmap(prev).map_id == tmap.map_id


def test_refused_adaptation_changes_nothing(mapped_gallery):
    gallery = mapped_gallery
    before = load_threatmap(gallery / "model" / "threatmap").map_id
    cfg = replace(QUICK, gate_margin=-1.0)  # no map can pass
    report = adapt_gallery(gallery, cleared_pngs(5), cfg, SCREEN_CFG, progress=False, opener=_open)
    assert not report["gate"]["accepted"] and "installed_map_id" not in report
    assert load_threatmap(gallery / "model" / "threatmap").map_id == before
    assert not (gallery / SCREENING_CALIBRATION_FILE).exists()
    assert (gallery / REPORT_FILE).is_file()


def test_adapt_reads_only_the_scans_its_time_holds(mapped_gallery, monkeypatch):
    # A station points adapt at thousands of scans; here each takes 8 s to read, so a
    # minute holds a few of 12, drawn at random, and the rest are not read for training.
    measured = adapt_module.plan_costs
    read = []
    monkeypatch.setattr(
        adapt_module,
        "plan_costs",
        lambda *a: (lambda c, *rest: (replace(c, read=8.0), *rest))(*measured(*a)),
    )
    reading = adapt_module.read_scans
    monkeypatch.setattr(
        adapt_module,
        "read_scans",
        lambda engine, chosen, decoded: read.extend(chosen) or reading(engine, chosen, decoded),
    )
    decoding = adapt_module.read_scan
    decoded = []
    monkeypatch.setattr(adapt_module, "read_scan", lambda *a: decoded.append(a[1]) or decoding(*a))
    cfg = replace(QUICK, minutes=1.0, gate_margin=1.0, require_gain=False)
    sources = cleared_pngs(12)
    report = adapt_gallery(mapped_gallery, sources, cfg, SCREEN_CFG, 0.25, 0.5, progress=False,
                           opener=_open)  # fmt: skip
    assert report["cleared_scans_given"] == 12
    assert adapt_module.MIN_SCANS <= report["cleared_scans"] == len(read) < 12
    assert report["cleared_scans_unread"] == 12 - len(read)
    # The scan timed is not decoded again; the thresholds read unread scans while the clock
    # (not the faked cost) leaves time, and only those.
    measured_on = report["screening_calibration"]["scans"]
    assert len(decoded) == len(read) + measured_on["unread"]
    assert measured_on["held_out"] == report["held_out_scans"]
    assert report["screening_calibration"]["metrics"]["scans"] == sum(measured_on.values())
    assert report["training_scans"] + report["held_out_scans"] == len(read)
    assert [name for name, _ in read] != [name for name, _ in sources[: len(read)]]
    assert report["costs_s"]["read"] == 8.0 and report["costs_s"]["calibrate"] > 0


def test_thresholds_take_the_scans_training_never_saw_while_the_budget_lasts(engine):
    # Held-out scans always; then the ones the plan read but left out, then the unread ones
    # (an unreadable one skipped), each only while twice its cost still ends in time.
    scans = [np.full((40, 50), v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)]
    result = AdaptResult(model=None, accepted=True, report={}, holdout=[3, 1], unused=[0])
    unread = [*cleared_pngs(2), ("broken.png", b"not an image")]
    costs = Costs(1, 1, 1, 1, 1, 1, read=5.0, calibrate=5.0)
    counted = {}
    later = time.perf_counter() + 3600
    got = list(threshold_scans(engine, scans, result, unread, costs, later, counted))
    assert [g.mean() for g in got[:3]] == pytest.approx([0.4, 0.2, 0.1])
    assert len(got) == 5 and got[3].shape == got[4].shape != scans[0].shape
    assert counted == {"held_out": 2, "left_out": 1, "unread": 2}
    # 15 s left: the left-out scan (2 x 5 s) still fits, reading one (2 x 10 s) does not
    soon = time.perf_counter() + 15
    got = list(threshold_scans(engine, scans, result, unread, costs, soon, counted))
    assert len(got) == 3 and counted == {"held_out": 2, "left_out": 1, "unread": 0}
    # the budget spent: the held-out scans all the same
    got = list(threshold_scans(engine, scans, result, unread, costs, 0.0, counted))
    assert len(got) == 2 and counted == {"held_out": 2, "left_out": 0, "unread": 0}


def test_cli_adapt(mapped_gallery, tmp_path, capsys, monkeypatch):
    gallery = mapped_gallery
    scans = tmp_path / "cleared"
    scans.mkdir()
    for name, data in cleared_pngs(4):
        (scans / name).write_bytes(data)
    (scans / "broken.png").write_bytes(b"not an image")
    code = main(["adapt", str(scans), "--gallery", str(gallery), "--epochs", "1",
                 "--gate-margin", "-1", "--quiet", "--json", "--threads", "1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and not report["gate"]["accepted"]
    assert report["cleared_scans"] == 4 and len(report["unreadable_scans"]) == 1
    assert json.loads((gallery / REPORT_FILE).read_text())["gate"] == report["gate"]
    # The same report read by a person (without adapting again): the held-out measure, small
    # parts and larger objects apart.
    asked = []
    monkeypatch.setattr(
        "gunmatch.commands.adapt.adapt_gallery", lambda *a, **k: asked.append(a[2]) or report
    )
    code = main(["adapt", str(scans), "--gallery", str(gallery), "--quiet", "--base-share", "0"])
    text = capsys.readouterr().out
    assert asked[0].base_share == 0.0  # the fine-tuned head as trained
    assert code == 1 and "refused" in text and str(gallery / REPORT_FILE) in text
    assert "given" not in text  # every scan was read, the unreadable one tried
    for key in ("auc_small", "auc_large"):
        assert station_change(report, key) in text
    # Accepted: the thresholds, and how to undo it.
    metrics = {"scans": 67, "expected_false_alarm": 1 / 68}
    counted = {"held_out": 60, "left_out": 0, "unread": 7}
    cal = {"alert_threshold": 0.9, "review_threshold": 0.8, "metrics": metrics, "scans": counted}
    gate = {**report["gate"], "accepted": True}
    accepted = {**report, "gate": gate, "screening_calibration": cal}
    monkeypatch.setattr("gunmatch.commands.adapt.adapt_gallery", lambda *a, **k: accepted)
    assert main(["adapt", str(scans), "--gallery", str(gallery), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "alert 0.900 (about 1.5% of new clean parcels), review 0.800" in text
    assert "67 cleared scans training never saw (60 held out, 7 not read for training)" in text
    assert "given" not in text
    # A station that offered more scans than the budget held is told so.
    monkeypatch.setattr(
        "gunmatch.commands.adapt.adapt_gallery",
        lambda *a, **k: {**accepted, "cleared_scans_given": 1000, "cleared_scans_unread": 995},
    )
    assert main(["adapt", str(scans), "--gallery", str(gallery), "--quiet"]) == 0
    assert "held-out scans of 1000 given," in capsys.readouterr().out
    assert f"gunmatch gallery threatmap {gallery / 'model' / PREVIOUS} --gallery {gallery}" in text


def test_threat_references_keep_one_order_whenever_they_were_added(mapped_gallery):
    # Projections draw references by position: the same gallery content must give the same
    # order, however the store lists them (by the second each was added).
    with Gallery.open(mapped_gallery) as g:
        listed = g.items
        first = adapt_module.threat_references(g, 99.0)
        g.items = lambda *a, **k: list(reversed(listed(*a, **k)))
        again = adapt_module.threat_references(g, 99.0)
    assert len(first) >= 2
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_station_change_reads_a_size_before_and_after():
    report = {"before": {"station": {"auc_small": 0.8, "auc_large": None}},
              "after": {"station": {"auc_small": 0.75, "auc_large": None}}}  # fmt: skip
    assert station_change(report, "auc_small") == "0.800 -> 0.750"
    assert station_change(report, "auc_large") == "none drawn"


@pytest.mark.parametrize(
    "extra",
    [
        ["--holdout", "1.5"],
        ["--false-alarm", "0.2"],
        ["--rehearsal", "-1"],
        ["--base-share", "1"],
        [],
    ],
)
def test_cli_adapt_refuses_bad_input(mapped_gallery, tmp_path, extra):
    gallery = mapped_gallery
    # Bad numbers, and (without extra flags) a folder holding no images: usage errors.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["adapt", str(empty), "--gallery", str(gallery), *extra])
    assert exc.value.code == 2


def _searched(audit, name, data, decision="clear", modality="xray"):
    """An audited search of ``data``, as the service writes it."""
    sha, rel = audit.store_image(data, ".png")
    return audit.append("search", "station", new_query_id(), sha, rel, "m", decision,
                        {"filename": name, "modality": modality})  # fmt: skip


def test_cleared_scans_are_the_newest_clear_xray_searches_nobody_questioned(tmp_path, audit_secret):
    audit = AuditLog(tmp_path, load_keyring(audit_secret))
    feedback = FeedbackStore(state_db_path(tmp_path))
    scans = cleared_pngs(4)
    kept = [_searched(audit, n, d) for n, d in scans[:3]]
    _searched(audit, "alert.png", scans[3][1], decision="alert")
    _searched(audit, "photo.png", scans[3][1], modality="photo")
    questioned = _searched(audit, "q.png", scans[3][1])
    feedback.add("analyst", questioned.query_id, "", "", "x", "wrong")
    got = cleared_scans(audit, feedback, limit=10)
    assert [name for name, _ in got] == [f"audit/{r.id}" for r in reversed(kept)]
    assert got[0][1].read_bytes() == scans[2][1]
    assert len(cleared_scans(audit, feedback, limit=2)) == 2
    audit.close()
    feedback.close()


def test_adapt_job_runs_one_at_a_time_and_reports_phase_and_failure():
    job, go = AdaptJob(), threading.Event()

    def run(on_phase):
        on_phase("adapting")
        go.wait(10)
        return {"gate": {"accepted": False}}

    assert job.start(run, scans=5, budget_s=60).state == "running"
    with pytest.raises(RuntimeError):
        job.start(run, scans=5, budget_s=60)
    assert job.status.phase == "adapting"
    go.set()
    job.join(10)
    assert job.status.state == "refused" and job.status.report == {"gate": {"accepted": False}}

    def broken(on_phase):
        raise ValueError("need at least 4 readable cleared scans")

    job.start(broken, scans=1, budget_s=60)
    job.join(10)
    st = job.status.to_dict()
    assert st["state"] == "failed" and "readable" in st["error"] and st["elapsed_s"] >= 0
