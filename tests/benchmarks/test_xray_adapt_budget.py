"""benchmarks.xray_adapt_budget: adapt on several station sizes, each against its budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks import xray_adapt_budget
from gunmatch.commands import adapt as adapt_command
from training.xray.adapt import AdaptConfig


def test_a_station_folder_holds_the_first_scans(tmp_path):
    written = tmp_path / "written"
    written.mkdir()
    for i in range(5):
        (written / f"cleared-{i:04d}.png").write_bytes(bytes([i]))
    folder = xray_adapt_budget.station_folder(tmp_path / "three", written, 3)
    assert sorted(p.name for p in folder.iterdir()) == [f"cleared-{i:04d}.png" for i in range(3)]
    assert (folder / "cleared-0002.png").read_bytes() == bytes([2])


def test_counts_and_station_are_checked():
    with pytest.raises(SystemExit, match="must be a look or a scene"):
        xray_adapt_budget.main(["--station", "classic"])
    with pytest.raises(SystemExit, match="at least 4"):
        xray_adapt_budget.main(["--station", "noisy-lowres", "--cleared", "3"])
    with pytest.raises(SystemExit, match="--look goes with a scene"):
        xray_adapt_budget.main(["--station", "noisy-lowres", "--look", "grey-highres"])
    # A scene station scanned in one look has its own section.
    assert xray_adapt_budget.section_name("dense", "grey-highres") == (
        "adapt-budget-dense-in-grey-highres"
    )
    assert xray_adapt_budget.section_name("dense") == "adapt-budget-dense"


@pytest.mark.slow  # two adaptations of a tiny gallery: about half a minute on 2 cores
def test_each_station_size_is_a_row_with_its_phases(monkeypatch, tiny_map):
    quick = replace(AdaptConfig(), epochs=1, gate_parcels=6, holdout=0.5)
    monkeypatch.setattr(adapt_command, "AdaptConfig", lambda: quick)
    args = xray_adapt_budget.parser().parse_args(
        ["--station", "noisy-lowres", "--held-out", "none", "--cleared", "4", "6",
         "--minutes", "30", "--size", "320x250", "--refs-per-kind", "1", "--benign-refs", "1",
         "--augment", "0", "--crop", "64", "--threads", "1", "--threatmap", str(tiny_map[0])]
    )  # fmt: skip
    res = xray_adapt_budget.run(args)
    assert [r["cleared"] for r in res] == [4, 6]
    for row in res:
        rep = row["report"]
        assert rep["cleared_scans_given"] == rep["cleared_scans"] == row["cleared"]
        assert rep["training_scans"] + rep["held_out_scans"] == row["cleared"]
        assert set(rep["phases_s"]) >= {"reading", "adapting"}
        assert sum(rep["phases_s"].values()) <= row["seconds"] + 1.0
        # an epoch as planned and as run, side by side
        assert rep["planned_epoch_s"] > 0 and rep["history"][0]["seconds"] > 0
        assert rep["planned_cache_s"] > 0 and rep["cache_s"] > 0
    text = xray_adapt_budget.markdown(args, res, "cmd", "machine at start")
    lines = text.splitlines()
    assert lines[0] == "## X-ray station adaptation against its time budget: noisy-lowres"
    rows = [line for line in lines if line.startswith("| 4 |") or line.startswith("| 6 |")]
    assert len(rows) == 2 and all("of 1800 |" in line for line in rows)
    assert "| 6 | 6 | 3 | 3 | 1 of 1 |" in text
    assert "| caching s planned / run | epoch s planned / run |" in text
