"""Scanner styles: the default stays bit-identical, every preset renders, exports decode."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from matcher.preprocess import xray_to_transmission
from synth import render_parcel, write_parcel_set
from synth.detector import STATION_PALETTE, Palette, pseudo_colour
from synth.projection import Box, tight_box
from synth.scanner import ScanSettings, detect
from synth.shapes import (
    BENIGN_KINDS,
    CONFUSER_KINDS,
    LONG_GUN_KINDS,
    PART_KINDS,
    SCENE_KINDS,
    THREAT_KINDS,
    render_part,
)
from synth.styles import (
    LOOKS,
    SCENES,
    STYLED_THREAT_KINDS,
    ScannerStyle,
    StyleSampler,
    get_style,
    random_style,
    style_names,
    with_look,
)

SMALL = (320, 256)


def _decode(export: np.ndarray) -> np.ndarray:
    """What the service makes of an export: PNG bytes -> decode -> transmission."""
    buf = io.BytesIO()
    Image.fromarray(export).save(buf, "PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        return xray_to_transmission(im)


# Measured on the generator before styles existed (commit 4db6a61): seed, kind, size ->
# threat box, clutter count, sum of the high-energy image.
GOLDEN = [
    (7, "pistol", (320, 256), (199, 75, 36, 34), 13, 61212.1953125),
    (3, None, (320, 256), None, 14, 65021.87890625),
    (11, "slide", (640, 500), (261, 222, 62, 122), 10, 245554.0),
]


@pytest.mark.parametrize("seed,kind,size,box,n_clutter,total", GOLDEN)
def test_default_style_is_todays_generator(seed, kind, size, box, n_clutter, total):
    plain = render_parcel(seed, size=size, threat_kind=kind)
    named = render_parcel(seed, size=size, threat_kind=kind, style="default")
    np.testing.assert_array_equal(plain.image, named.image)
    np.testing.assert_array_equal(plain.low, named.low)
    assert plain.boxes == named.boxes and plain.clutter == named.clutter
    assert named.export is None and named.style == "default"
    assert (plain.boxes[0].as_tuple() if plain.boxes else None) == box
    assert len(plain.clutter) == n_clutter
    assert float(plain.image.sum(dtype=np.float64)) == pytest.approx(total, rel=1e-6)


def test_default_palette_is_the_station_palette():
    p = render_parcel(7, size=SMALL, threat_kind="pistol")
    np.testing.assert_array_equal(pseudo_colour(p.image, p.low),
                                  pseudo_colour(p.image, p.low, STATION_PALETTE))
    other = pseudo_colour(p.image, p.low, Palette(organic=(1.0, 0.8, 0.0)))
    assert not np.array_equal(other, p.colour())


def test_preset_names_and_errors():
    assert get_style("default").is_default and get_style("default").name == "default"
    s = get_style("noisy-lowres+tools")
    assert s.families == ("noisy-lowres", "tools") and s.name == "noisy-lowres+tools"
    assert get_style("tools").families == ("default", "tools")
    assert get_style("dual-energy-orange").families == ("dual-energy-orange", "classic")
    assert get_style(s) is s
    names = style_names()
    assert names[0] == "default" and len(names) == len(LOOKS) * len(SCENES)
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="looks"):
        get_style("polaroid")
    with pytest.raises(ValueError, match="unknown style families"):
        random_style(np.random.default_rng(0), exclude={"polaroid"})


def test_random_style_holds_families_out():
    rng = np.random.default_rng(0)
    held = {"noisy-lowres", "dual-energy-vivid", "tools"}
    drawn = [random_style(rng, exclude=held) for _ in range(200)]
    looks = {s.look.name for s in drawn}
    scenes = {s.scene.name for s in drawn}
    assert not (looks | scenes) & held
    assert looks == set(LOOKS) - held and scenes == set(SCENES) - held
    again = [random_style(np.random.default_rng(0), exclude=held) for _ in range(3)]
    assert again[0] == drawn[0]
    no_default = StyleSampler(include_default=False)
    assert all(not no_default(rng).is_default for _ in range(50))
    assert "default" not in no_default.looks() and "classic" not in no_default.scenes()
    assert StyleSampler(("tools", "dense", "tools")).exclude == ("dense", "tools")
    sampler = StyleSampler(("tools",))
    assert sampler.for_seed(5) == sampler.for_seed(5)
    with pytest.raises(ValueError, match="unknown style families"):
        StyleSampler(("polaroid",))
    with pytest.raises(ValueError, match="nothing left"):
        StyleSampler(tuple(LOOKS))(rng)


def test_scene_kinds_stay_out_of_the_default_registries():
    assert not set(SCENE_KINDS) & set(PART_KINDS)
    assert not set(SCENE_KINDS) & (set(THREAT_KINDS) | set(BENIGN_KINDS))
    assert set(LONG_GUN_KINDS) <= set(STYLED_THREAT_KINDS)
    for kind, spec in SCENE_KINDS.items():
        assert spec.name_zh and not spec.name_zh.isascii()
        assert spec.threat == (kind in LONG_GUN_KINDS)
        other = "other" if kind in CONFUSER_KINDS else "benign"
        assert spec.category == ("whole_firearm" if spec.threat else other)


@pytest.mark.parametrize("kind", sorted(SCENE_KINDS))
def test_every_scene_kind_renders(kind):
    part = render_part(kind, np.random.default_rng(2), size_px=96, angle_deg=35.0)
    assert max(part.thickness.shape) == 96
    assert all(np.isfinite(t).all() and t.min() >= 0 for t in part.layers.values())
    assert part.total_thickness.max() > (0.05 if kind == "razor_blade" else 1.0)
    assert part.total_thickness[0].max() == 0.0 and part.total_thickness[:, -1].max() == 0.0


def _check_parcel(p, size_hint, kind):
    h, w = p.image.shape
    assert p.low.shape == (h, w) and p.image.dtype == np.float32
    assert p.image.min() >= 0.0 and p.image.max() <= 1.0
    assert np.all(p.low <= p.image + 1e-6)
    frame = Box(0, 0, w, h)
    assert all(frame.contains(b) for b in p.boxes + p.clutter)
    e = p.export
    assert e is not None and e.shape[:2] == (h, w)
    look = get_style(p.style).look
    if look.export == "colour":
        assert e.dtype == np.uint8 and e.shape == (h, w, 3)
    elif look.export == "grey16":
        assert e.dtype == np.uint16 and e.ndim == 2
        assert np.all(e & ((1 << (16 - look.bits)) - 1) == 0)
    else:
        assert e.dtype == np.uint8 and e.ndim == 2
    lo, hi = look.resolution
    assert lo * size_hint[0] - 2 <= w <= hi * size_hint[0] + 2
    if kind is None:
        assert p.boxes == [] and p.threat_mask is None
    else:
        assert len(p.boxes) == 1 and p.boxes[0].kind == kind
        # the box covers exactly the threat's own pixels, which are dark in the scan
        assert tight_box(p.threat_mask, kind) == p.boxes[0]
        assert np.median(p.image[p.threat_mask]) < np.median(p.image)


@pytest.mark.parametrize("name", style_names()[1:])
def test_every_preset_renders(name):
    style = get_style(name)
    kind = "pistol" if style.scene.name == "classic" else "rifle"
    p = render_parcel(5, size=SMALL, threat_kind=kind, style=name)
    assert p.style == name
    _check_parcel(p, SMALL, kind)
    clean = render_parcel(6, size=SMALL, style=name)
    _check_parcel(clean, SMALL, None)


def test_styled_render_is_deterministic_by_seed():
    a = render_parcel(21, size=SMALL, threat_kind="slide", style="dual-energy-orange+dense")
    b = render_parcel(21, size=SMALL, threat_kind="slide", style="dual-energy-orange+dense")
    c = render_parcel(22, size=SMALL, threat_kind="slide", style="dual-energy-orange+dense")
    np.testing.assert_array_equal(a.export, b.export)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.boxes == b.boxes and a.clutter == b.clutter
    assert a.export.shape != c.export.shape or not np.array_equal(a.export, c.export)


@pytest.mark.parametrize("style", [None, "grey-highres+classic", "dual-energy-vivid+electronics"])
def test_an_extra_item_leaves_the_rest_of_the_bag_as_it_was(style):
    """``extra_kind`` adds one item as clutter; every other pixel and box is the bag without
    it (what the confuser rows of benchmarks.xray_domain compare)."""
    size = (480, 384)
    for seed, kind in ((5, "shuriken"), (6, "razor_blade")):
        bare = render_parcel(seed, size=size, style=style)
        with_it = render_parcel(seed, size=size, style=style, extra_kind=kind)
        assert with_it.clutter[:-1] == bare.clutter and with_it.boxes == bare.boxes == []
        item = with_it.clutter[-1]
        assert item.kind == kind and with_it.threat_mask is None
        a = bare.image if bare.export is None else bare.export
        b = with_it.image if with_it.export is None else with_it.export
        changed = np.abs(a.astype(float) - b.astype(float)).reshape(a.shape[0], a.shape[1], -1)
        ys, xs = np.nonzero(changed.max(axis=-1) > 0)
        assert len(ys), "the item shows"
        # Only round the item (the export's blur spreads it by a few pixels).
        pad = 16
        assert xs.min() >= item.x - pad and xs.max() < item.x + item.w + pad
        assert ys.min() >= item.y - pad and ys.max() < item.y + item.h + pad
    with pytest.raises(ValueError):
        render_parcel(1, size=SMALL, extra_kind="no-such-kind")


def test_whole_guns_at_true_scale_and_any_angle():
    shares, angles = {"pistol": [], "revolver": [], "rifle": []}, []
    for i in range(8):
        for kind in shares:
            p = render_parcel(300 + i, size=(400, 312), threat_kind=kind,
                              style=f"default+{list(SCENES)[1 + i % 4]}")
            b = p.boxes[0]
            shares[kind].append(max(b.w, b.h) / 400)
            if kind == "rifle":
                angles.append(b.h / b.w)
    for kind in ("pistol", "revolver"):
        assert min(shares[kind]) >= 0.2 and max(shares[kind]) <= 0.5, shares[kind]
        assert 0.25 <= float(np.median(shares[kind])) <= 0.45
    assert float(np.median(shares["rifle"])) > 0.5  # long guns come in long containers
    assert max(angles) > 0.3  # not only lying along the belt
    with pytest.raises(ValueError, match="classic scene"):
        render_parcel(1, size=SMALL, threat_kind="rifle", style="noisy-lowres")


def test_stacking_and_density_follow_the_scene():
    sparse = [len(render_parcel(40 + i, size=SMALL, style="default+tools").clutter)
              for i in range(4)]
    dense = [len(render_parcel(40 + i, size=SMALL, style="default+dense").clutter)
             for i in range(4)]
    assert min(dense) > max(sparse)


def test_resolution_and_pixel_pitch_change_the_export():
    base = get_style("default+household")
    low = with_look(base, resolution=(0.5, 0.5))
    tall = with_look(base, aspect=(1.3, 1.3))
    a = render_parcel(9, size=SMALL, threat_kind="magazine", style=low)
    b = render_parcel(9, size=SMALL, threat_kind="magazine", style=tall)
    assert a.export.shape == (128, 160)
    assert b.export.shape == (256, 320)
    _check_parcel(b, SMALL, "magazine")  # rows resampled: box still from the resampled mask


def test_detector_noise_and_blur():
    flat = np.full((64, 64), 0.5, np.float32)
    flat[:, 32:] = 0.1
    s = ScanSettings(1.0, 1.0, 0.0, 0.0, 0.02, 0.0, 1.0, 0.0, None, (0.0,) * 9)
    noisy = detect(flat, s, np.random.default_rng(0))
    assert noisy[:, :30].std() > noisy[:, 34:].std() > 0.0  # photon noise grows with signal
    blurred = detect(flat, ScanSettings(1.0, 1.0, 1.5, 3.0, 0.0, 0.0, 1.0, 0.0, None,
                                        (0.0,) * 9), np.random.default_rng(0))
    assert 0.1 < blurred[10, 32] < 0.5 and blurred[10, 5] == pytest.approx(0.5)


@pytest.mark.parametrize("look", [n for n in LOOKS if n != "default"])
def test_exports_round_trip_through_the_service_decoder(look):
    p = render_parcel(12, size=(480, 376), threat_kind="slide", style=f"{look}+electronics")
    t = _decode(p.export)
    assert t.shape == p.image.shape and t.dtype == np.float32
    # decoded transmission orders pixels as the physics does
    phys = p.image.ravel()
    corr = np.corrcoef(t.ravel(), phys)[0, 1]
    assert corr > 0.85, corr
    empty = p.image > 0.995
    assert np.median(t[empty]) > 0.93  # empty belt decodes near white
    assert np.median(t[p.threat_mask]) < np.median(t[~empty]) < np.median(t[empty])


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_pseudo_colour_export_keeps_material_hues(seed):
    p = render_parcel(seed, size=(480, 376), threat_kind="pistol", n_clutter=0,
                      style="dual-energy-orange+tools")
    rgb = p.export.astype(int)
    metal = p.threat_mask & (p.image < 0.3)
    organic = ~p.threat_mask & (p.image > 0.4) & (p.image < 0.9)
    assert metal.sum() > 20 and organic.sum() > 100
    r, g, b = (np.median(rgb[..., c][metal]) for c in range(3))
    assert b > r, "dense steel is blue"
    r, g, b = (np.median(rgb[..., c][organic]) for c in range(3))
    assert r > g > b, "bags and clothes are orange"
    t = _decode(p.export)
    assert np.median(t[metal]) < np.median(t[organic]) < np.median(t[p.image > 0.995])


def test_write_parcel_set_with_styles(tmp_path):
    out = write_parcel_set(tmp_path / "a", 2, 1, seed=4, kinds=["rifle", "pistol"],
                           size=(240, 188), style="dual-energy-orange+dense")
    records = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert {r["style"] for r in records} == {"dual-energy-orange+dense"}
    assert sorted(r["threat_kind"] for r in records) == ["", "pistol", "rifle"]
    for rec in records:
        with Image.open(out / rec["file"]) as im:
            assert im.mode == "RGB" and im.size == (rec["width"], rec["height"])
        for b in rec["boxes"]:
            assert b["x"] + b["w"] <= rec["width"] and b["y"] + b["h"] <= rec["height"]
        assert rec["category"] == ("whole_firearm" if rec["threat_kind"] else "")
    mixed = write_parcel_set(tmp_path / "b", 3, 3, seed=4, size=(240, 188),
                             style=StyleSampler(("noisy-lowres",)))
    styles = [json.loads(x)["style"]
              for x in (mixed / "labels.jsonl").read_text().splitlines()]
    assert len(set(styles)) > 1 and not any(s.startswith("noisy-lowres") for s in styles)
    assert isinstance(get_style(styles[0]), ScannerStyle)
