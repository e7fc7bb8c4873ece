"""benchmarks.xray_maps: two threat maps screened on the very same bags, row by row."""

from __future__ import annotations

import pytest
import torch

from benchmarks import xray_adapt, xray_maps
from benchmarks.xray_screening import gallery_text
from matcher.threatmap import load_threatmap, save_threatmap

TINY = ["--held-out", "noisy-lowres", "--only", "default", "noisy-lowres", "--positives", "2",
        "--negatives", "2", "--size", "320x250", "--refs-per-kind", "1", "--benign-refs", "1",
        "--augment", "0", "--crop", "64", "--regions", "8", "--map-zooms", "1", "--map-views",
        "1", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def other_map(tiny_map, tmp_path_factory):
    """The tiny map with its head's weights moved at random: another map, the same trunk."""
    model = load_threatmap(tiny_map[0])
    torch.manual_seed(3)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if not name.startswith("trunk."):
                weight.add_(torch.randn_like(weight))
    return save_threatmap(model, tmp_path_factory.mktemp("other") / "other-map")


def test_each_map_screens_the_same_bags_and_the_change_is_paired(tiny_map, other_map):
    args = xray_maps.parser().parse_args(
        [*TINY, "--threatmap", str(other_map), "--against", str(tiny_map[0])]
    )
    res = xray_maps.run(args)
    rows = [[r["row"] for r in res[k]] for k in ("against", "candidate")]
    assert rows == [["default", "noisy-lowres"]] * 2
    # Each side ran its own map: the same bags, other scores.
    assert any(
        a["scores"] != c["scores"] for a, c in zip(res["against"], res["candidate"], strict=True)
    )
    assert all(
        len(r["scores"]["threat"]) == len(r["scores"]["clean"]) == 2
        for side in res.values()
        for r in side
    )
    text = xray_maps.markdown(args, res, "cmd", "machine at start")
    assert text.splitlines()[0] == (
        f"## X-ray threat maps compared: {other_map} against {tiny_map[0]}, bags holding a "
        "part, models trained without noisy-lowres"
    )
    assert "the test seeds of benchmarks.xray_domain" in text
    # One gallery description for every X-ray section; here the map is not part of it.
    assert f"Gallery {gallery_text(args, with_map=False)}, once with each map" in text
    assert "threat map" not in gallery_text(args, with_map=False)
    for a, c in zip(res["against"], res["candidate"], strict=True):
        line = f"| {a['row']} | {xray_adapt.cells(a)} | {xray_adapt.cells(c)} "
        assert f"{line}| {xray_adapt.change_cell(a, c)} |" in text


def test_a_section_per_pair_of_maps_and_kind_of_bag():
    args = xray_maps.parser().parse_args(
        ["--guns", "--threatmap", "runs/map-dense", "--against", "models/threatmap-v5"]
    )
    assert xray_maps.section_name(args) == "maps-guns-map-dense-vs-threatmap-v5"
    args.guns = None
    assert xray_maps.section_name(args) == "maps-map-dense-vs-threatmap-v5"


def test_the_candidate_map_must_be_named():
    with pytest.raises(SystemExit, match="candidate"):
        xray_maps.main(["--against", "models/threatmap-v5"])
