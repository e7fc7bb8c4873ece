"""`gunmatch adapt` on a gallery: install and recalibrate when accepted, change nothing when not."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

import pytest
from PIL import Image

from gunmatch.adapt import REPORT_FILE, adapt_gallery
from gunmatch.cli import main
from gunmatch.maps import PREVIOUS, install_threatmap
from gunmatch.service import open_engine
from index import Gallery
from matcher.threatmap import load_threatmap
from screening.calibration import SCREENING_CALIBRATION_FILE
from synth.xray import render_parcel
from tests.helpers import SCREEN_CFG
from training.xray.adapt import AdaptConfig

QUICK = AdaptConfig(epochs=2, gate_parcels=6, holdout=0.5, minutes=30)


@pytest.fixture()
def gallery(engine, tiny_map, tmp_path):
    """A copy of the tiny X-ray gallery with the tiny threat map installed."""
    engine.gallery.flush()
    root = tmp_path / "gallery"
    shutil.copytree(engine.gallery.root, root, ignore=shutil.ignore_patterns("*.lock", ".lock"))
    with Gallery.open(root) as g:
        install_threatmap(g, tiny_map[0])
    return root


def _scans(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        t = render_parcel(800 + i, size=(400, 320), threat_kind=None, n_clutter=3).image
        buf = io.BytesIO()
        Image.fromarray((t * 255 + 0.5).astype("uint8"), "L").save(buf, "PNG")
        out.append((f"cleared_{i}.png", buf.getvalue()))
    return out


def _open(d):
    return open_engine(d, threads=1)


def test_accepted_adaptation_installs_the_map_and_measures_thresholds(gallery):
    before = load_threatmap(gallery / "model" / "threatmap").map_id
    cfg = replace(QUICK, gate_margin=1.0, require_gain=False)  # accept whatever it learns
    report = adapt_gallery(gallery, _scans(6), cfg, SCREEN_CFG, 0.25, 0.5, progress=False,
                           opener=_open)  # fmt: skip
    assert report["gate"]["accepted"] and report["base"] == "gallery"
    tmap = load_threatmap(gallery / "model" / "threatmap")
    assert tmap.map_id == report["installed_map_id"] != before
    assert load_threatmap(gallery / "model" / PREVIOUS).map_id == before
    cal = json.loads((gallery / SCREENING_CALIBRATION_FILE).read_text())
    assert cal["metrics"]["scans"] == report["held_out_scans"] == 3
    assert cal["screening"]["threatmap"]["id"] == tmap.map_id
    assert report["screening_calibration"]["alert_threshold"] == cal["alert_threshold"]
    assert json.loads((gallery / REPORT_FILE).read_text())["installed_map_id"] == tmap.map_id


def test_refused_adaptation_changes_nothing(gallery):
    before = load_threatmap(gallery / "model" / "threatmap").map_id
    cfg = replace(QUICK, gate_margin=-1.0)  # no map can pass
    report = adapt_gallery(gallery, _scans(5), cfg, SCREEN_CFG, progress=False, opener=_open)
    assert not report["gate"]["accepted"] and "installed_map_id" not in report
    assert load_threatmap(gallery / "model" / "threatmap").map_id == before
    assert not (gallery / SCREENING_CALIBRATION_FILE).exists()
    assert (gallery / REPORT_FILE).is_file()


def test_cli_adapt(gallery, tmp_path, capsys):
    scans = tmp_path / "cleared"
    scans.mkdir()
    for name, data in _scans(4):
        (scans / name).write_bytes(data)
    (scans / "broken.png").write_bytes(b"not an image")
    code = main(["adapt", str(scans), "--gallery", str(gallery), "--epochs", "1",
                 "--gate-margin", "-1", "--quiet", "--json", "--threads", "1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and not report["gate"]["accepted"]
    assert report["cleared_scans"] == 4 and len(report["unreadable_scans"]) == 1


@pytest.mark.parametrize("extra", [["--holdout", "1.5"], ["--false-alarm", "0.2"], []])
def test_cli_adapt_refuses_bad_input(gallery, tmp_path, extra):
    # Bad numbers, and (without extra flags) a folder holding no images: usage errors.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["adapt", str(empty), "--gallery", str(gallery), *extra])
    assert exc.value.code == 2
