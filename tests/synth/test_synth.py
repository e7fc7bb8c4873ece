"""Synthetic part, X-ray, parcel, photo and dataset generators."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from synth import (
    CATEGORIES,
    PART_KINDS,
    Box,
    pseudo_colour,
    render_isolated,
    render_parcel,
    render_part,
    render_photo,
    to_uint8,
    to_uint16,
    transmission,
    write_parcel_set,
    write_reference_set,
)
from synth.materials import MATERIALS, attenuation
from synth.projection import tight_box
from synth.shapes import THREAT_KINDS

SMALL = (320, 256)


def test_registry_metadata():
    assert len(PART_KINDS) >= 25
    for key, kind in PART_KINDS.items():
        assert kind.key == key
        assert kind.category in CATEGORIES
        assert kind.name_zh and not kind.name_zh.isascii()
        assert kind.name_en.isascii()
        assert kind.threat == (kind.category not in ("benign", "other"))
    assert PART_KINDS["pistol"].category == "whole_firearm"
    assert PART_KINDS["pen"].threat is False


@pytest.mark.parametrize("kind", sorted(PART_KINDS))
def test_every_kind_renders(kind):
    part = render_part(kind, np.random.default_rng(1), size_px=64, angle_deg=20.0)
    assert max(part.thickness.shape) == 64
    for name, t in part.layers.items():
        assert name in MATERIALS
        assert t.dtype == np.float32 and t.shape == part.thickness.shape
        assert np.isfinite(t).all() and t.min() >= 0.0
    assert part.total_thickness.max() > 0.5
    # the margin stays empty
    assert part.total_thickness[0].max() == 0.0 and part.total_thickness[:, -1].max() == 0.0


def test_instances_vary_and_are_deterministic():
    a = render_part("slide", np.random.default_rng(3))
    b = render_part("slide", np.random.default_rng(3))
    c = render_part("slide", np.random.default_rng(4))
    np.testing.assert_array_equal(a.thickness, b.thickness)
    assert a.thickness.shape != c.thickness.shape or not np.array_equal(a.thickness, c.thickness)
    x1, x2 = render_isolated("pistol", 11), render_isolated("pistol", 11)
    np.testing.assert_array_equal(x1.transmission, x2.transmission)
    np.testing.assert_array_equal(x1.low, x2.low)
    assert not np.array_equal(x1.transmission, render_isolated("pistol", 12).transmission)


def test_isolated_scan_value_ranges():
    scan = render_isolated("revolver", 2, size=128)
    t = scan.transmission
    assert t.shape == (128, 128) and t.dtype == np.float32
    assert t.min() > 0.0 and t.max() <= 1.0
    assert t[0, 0] == 1.0 and t[-1, -1] == 1.0  # empty belt
    assert t.min() < 0.2
    assert np.all(scan.low <= t + 1e-7), "low energy is attenuated more"
    assert scan.box == tight_box(t < 0.98, "revolver")
    assert scan.box.x >= 10 and scan.box.x + scan.box.w <= 118  # centred with margin


def test_fixed_rotation_turns_the_part():
    flat = render_isolated("barrel", 5, size=128, rotation=0.0).box
    upright = render_isolated("barrel", 5, size=128, rotation=90.0).box
    assert flat.w > 3 * flat.h and upright.h > 3 * upright.w
    assert abs(flat.w - upright.h) <= 2


def test_beer_lambert_sanity():
    one = {"steel": np.full((2, 2), 1.0, np.float32)}
    two = {"steel": np.full((2, 2), 2.0, np.float32)}
    assert transmission(two)[0, 0] < transmission(one)[0, 0]
    assert transmission(one)[0, 0] == pytest.approx(math.exp(-MATERIALS["steel"].mu_high))
    assert transmission(two)[0, 0] == pytest.approx(transmission(one)[0, 0] ** 2, rel=1e-6)
    t = {
        m: transmission({m: np.full((1, 1), 5.0, np.float32)})[0, 0]
        for m in ("organic", "plastic", "aluminium", "steel", "lead")
    }
    assert t["organic"] > t["plastic"] > t["aluminium"] > t["steel"] > t["lead"]
    assert transmission({"organic": np.zeros((3, 3), np.float32)}).min() == 1.0
    for m in MATERIALS:
        assert MATERIALS[m].mu_low > MATERIALS[m].mu_high


def test_overlapping_objects_multiply():
    a = render_part("wrench", np.random.default_rng(0), size_px=48).layers
    b = render_part("cable", np.random.default_rng(1), size_px=48).layers
    h = min(x.shape[0] for x in [*a.values(), *b.values()])
    w = min(x.shape[1] for x in [*a.values(), *b.values()])
    a = {k: v[:h, :w] for k, v in a.items()}
    b = {k: v[:h, :w] for k, v in b.items()}
    both = {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}
    for energy in ("high", "low"):
        np.testing.assert_allclose(
            transmission(both, energy), transmission(a, energy) * transmission(b, energy), rtol=1e-5
        )
    with pytest.raises(ValueError):
        attenuation({"unobtainium": np.ones((1, 1))})


def test_parcel_with_threat():
    p = render_parcel(7, size=SMALL, threat_kind="pistol")
    h, w = p.image.shape
    assert (w, h) == SMALL and p.low.shape == (h, w)
    assert p.image.min() > 0.0 and p.image.max() <= 1.0
    assert np.median(np.concatenate([p.image[0], p.image[-1]])) == 1.0  # belt around the bag
    assert p.threat_kind == "pistol" and len(p.boxes) == 1
    box = p.boxes[0]
    assert Box(0, 0, w, h).contains(box)
    assert 0.03 * max(w, h) <= max(box.w, box.h) <= 0.26 * max(w, h)
    ys, xs = np.nonzero(p.threat_mask)
    assert ys.size > 20
    assert tight_box(p.threat_mask, "pistol") == box  # the box covers exactly the threat pixels
    assert np.median(p.image[p.threat_mask]) < 0.6  # the threat is dark in the scan
    assert all(Box(0, 0, w, h).contains(c) for c in p.clutter)


def test_parcel_without_threat_and_determinism():
    a = render_parcel(3, size=SMALL, n_clutter=4)
    b = render_parcel(3, size=SMALL, n_clutter=4)
    assert a.boxes == [] and a.threat_mask is None and a.threat_kind is None
    np.testing.assert_array_equal(a.image, b.image)
    assert len([c for c in a.clutter if c.kind in PART_KINDS]) <= 4
    with pytest.raises(ValueError):
        render_parcel(1, size=SMALL, threat_kind="bazooka")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threat_scale_range(seed):
    kind = THREAT_KINDS[seed]
    p = render_parcel(seed, size=SMALL, threat_kind=kind, threat_scale=(0.2, 0.2), n_clutter=0)
    assert max(p.boxes[0].w, p.boxes[0].h) <= 0.2 * max(SMALL) + 1


def test_exports_dtypes_and_values():
    t = np.array([[1.0, 0.5], [0.25, 0.0]], np.float32)
    u8 = to_uint8(t)
    assert u8.dtype == np.uint8 and u8.tolist() == [[255, 128], [64, 0]]
    u16 = to_uint16(t)
    assert u16.dtype == np.uint16 and u16.shape == (2, 2)
    assert int(u16[0, 0]) == 4095 << 4 and np.all(u16 & 0xF == 0)  # 12 significant bits
    noisy = to_uint8(
        np.full((64, 64), 0.5, np.float32), np.random.default_rng(0), noise=0.02, blur_sigma=0.6
    )
    again = to_uint8(
        np.full((64, 64), 0.5, np.float32), np.random.default_rng(0), noise=0.02, blur_sigma=0.6
    )
    np.testing.assert_array_equal(noisy, again)
    assert 1.0 < noisy.astype(float).std() < 6.0 and abs(noisy.mean() - 127.5) < 1.0


def test_pseudo_colour_classes():
    def pair(mat: str, mm: float) -> tuple[np.ndarray, np.ndarray]:
        layers = {mat: np.full((4, 4), mm, np.float32)}
        return transmission(layers, "high"), transmission(layers, "low")

    empty = pseudo_colour(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))
    assert empty.shape == (4, 4, 3) and empty.dtype == np.uint8 and np.all(empty == 255)
    r, g, b = pseudo_colour(*pair("organic", 60.0))[0, 0].astype(int)
    assert r > g > b, "organics are orange"
    r, g, b = pseudo_colour(*pair("aluminium", 15.0))[0, 0].astype(int)
    assert g > r and g > b, "light metals are green"
    r, g, b = pseudo_colour(*pair("steel", 4.0))[0, 0].astype(int)
    assert b > r and b > g, "metals are blue"
    thick = pseudo_colour(*pair("steel", 12.0))[0, 0].astype(int)
    assert thick.sum() < pseudo_colour(*pair("steel", 4.0))[0, 0].astype(int).sum()
    lead = pseudo_colour(*pair("lead", 40.0))[0, 0].astype(int)
    assert np.all(lead < 60) and lead[2] > lead[0], "impenetrable is dark, metal-blue"


def test_photo_is_deterministic_rgb():
    a = render_photo("magazine", 4, size=96)
    b = render_photo("magazine", 4, size=96)
    assert a.mode == "RGB" and a.size == (96, 96)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    arr = np.asarray(a).astype(float)
    assert arr.mean() > 90  # light background
    assert arr.min() < 80  # dark part


def test_write_reference_set_layout(tmp_path):
    paths = write_reference_set(tmp_path, ["slide", "key"], 2, seed=1, size=64)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "slide/slide_0.png",
        "slide/slide_1.png",
        "key/key_0.png",
        "key/key_1.png",
    ]
    with Image.open(paths[0]) as im:
        assert im.mode == "L" and im.size == (64, 64)
    again = write_reference_set(tmp_path / "b", ["slide"], 1, seed=1, size=64)
    with Image.open(paths[0]) as x, Image.open(again[0]) as y:
        assert np.array_equal(np.asarray(x), np.asarray(y))
    photos = write_reference_set(tmp_path / "p", ["key"], 1, modality="photo", size=64)
    with Image.open(photos[0]) as im:
        assert im.mode == "RGB"
    with pytest.raises(ValueError):
        write_reference_set(tmp_path, ["slide"], 1, modality="ct")


def test_write_parcel_set_labels(tmp_path):
    out = write_parcel_set(
        tmp_path, 2, 1, seed=2, kinds=["barrel", "magazine"], size=(200, 160), fmt="gray16"
    )
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["parcel_00000.png", "parcel_00001.png", "parcel_00002.png"]
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert sorted(r["threat_kind"] for r in records) == ["", "barrel", "magazine"]
    for rec in records:
        with Image.open(out / rec["file"]) as im:
            assert im.mode == "I;16" and im.size == (200, 160)
        for b in rec["boxes"]:
            assert b["x"] >= 0 and b["x"] + b["w"] <= 200 and b["y"] >= 0 and b["y"] + b["h"] <= 160
        assert bool(rec["boxes"]) == bool(rec["threat_kind"])
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == [r["file"] for r in records]
    assert all((r["x"] == "") == (r["threat_kind"] == "") for r in rows)
    colour = write_parcel_set(tmp_path / "c", 1, 0, seed=2, size=(200, 160), fmt="colour")
    with Image.open(colour / "parcel_00000.png") as im:
        assert im.mode == "RGB"
