"""Styled training parcels: off by default, decoded exports with aligned masks when on."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from matcher.threatmap import ThreatMap, ThreatMapConfig
from synth import render_parcel
from synth.styles import StyleSampler
from training.xray.head import XrayHeadConfig, training_crops
from training.xray.styled import observed, training_parcel
from training.xray.threatmap import ThreatMapTrainConfig, build_cache

SIZE = (400, 320)
# Only styled looks and scenes, so every parcel below differs from the default render.
STYLED = StyleSampler(include_default=False)


def test_no_sampler_is_todays_parcel():
    parcel, image = training_parcel(70_000_001, SIZE, "slide", None)
    plain = render_parcel(70_000_001, size=SIZE, threat_kind="slide")
    np.testing.assert_array_equal(image, plain.image)
    assert parcel.boxes == plain.boxes and parcel.export is None
    assert observed(plain) is plain.image
    assert ThreatMapTrainConfig().styles is None and XrayHeadConfig().styles is None


def test_styled_parcel_is_seen_as_decoded():
    for seed in range(70_000_000, 70_000_004):
        parcel, image = training_parcel(seed, SIZE, "magazine", STYLED)
        assert parcel.style == STYLED.for_seed(seed).name != "default"
        assert image.shape == parcel.threat_mask.shape == parcel.image.shape
        assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
        assert not np.array_equal(image, parcel.image)  # the export, not the clean physics
        assert np.median(image[parcel.threat_mask]) < np.median(image)


def test_configs_with_a_sampler_stay_json_ready():
    cfg = replace(ThreatMapTrainConfig(), styles=StyleSampler(("noisy-lowres", "tools")))
    text = json.dumps(asdict(cfg))
    assert '"exclude": ["noisy-lowres", "tools"]' in text


def test_threatmap_cache_on_styled_parcels():
    model = ThreatMap(ThreatMapConfig(long_side=192, width=8))
    plan = [(70_000_010, "pistol"), (70_000_011, None)]
    cache = build_cache(model, plan, SIZE, progress=False, styles=STYLED)
    assert cache.kinds == ["pistol", ""]
    assert cache.targets[0].max() > 0 and cache.targets[1].max() == 0


def test_head_crops_from_styled_parcels():
    cfg = XrayHeadConfig(
        parcels=2,
        clean_every=2,
        parcel_size=SIZE,
        isolated_per_kind=0,
        projected_per_kind=0,
        regions=12,
        input_size=64,
        styles=STYLED,
    )
    crops, labels = training_crops(cfg)
    plain, _ = training_crops(replace(cfg, styles=None))
    assert len(crops) == len(labels) > 0
    assert all(c.shape == (64, 64) for c in crops)
    assert len(plain) != len(crops) or any(
        not np.array_equal(a, b) for a, b in zip(plain, crops, strict=True)
    )


def test_sampler_can_swap_in_long_guns():
    sampler = StyleSampler(("default", "classic"), long_guns=1.0)
    parcel, image = training_parcel(70_000_020, SIZE, "spring", sampler)
    assert parcel.boxes[0].kind in ("rifle", "shotgun")
    assert image.shape == parcel.threat_mask.shape
    keep = StyleSampler(long_guns=0.0)
    assert keep.threat_for(1, "spring", keep.for_seed(1)) == "spring"
    classic = StyleSampler(("electronics", "household", "tools", "dense"), long_guns=1.0)
    assert classic.threat_for(1, "spring", classic.for_seed(1)) == "spring"
    assert sampler.threat_for(1, None, sampler.for_seed(1)) is None


def test_default_share_renders_some_parcels_as_today():
    mixed = StyleSampler(default_share=0.5)
    seeds = range(70_000_100, 70_000_140)
    plain = [s for s in seeds if mixed.plain(s)]
    assert 8 < len(plain) < 32  # about half of 40
    assert not any(StyleSampler().plain(s) for s in seeds)
    parcel, image = training_parcel(plain[0], SIZE, "slide", mixed)
    today, _ = training_parcel(plain[0], SIZE, "slide", None)
    assert parcel.export is None and np.array_equal(image, today.image)
    styled = next(s for s in seeds if not mixed.plain(s))
    assert training_parcel(styled, SIZE, "slide", mixed)[0].export is not None
    with pytest.raises(ValueError, match="default_share"):
        StyleSampler(default_share=1.0)


def test_sampler_puts_confusers_in_clean_parcels_as_clutter():
    sampler = StyleSampler(("default", "classic"), confusers=1.0)
    parcel, image = training_parcel(70_000_030, SIZE, None, sampler)
    held = sampler.threat_for(70_000_030, None, sampler.for_seed(70_000_030))
    assert held in ("shuriken", "razor_blade")
    assert parcel.boxes == [] and parcel.threat_mask is None
    assert parcel.clutter[-1].kind == held  # in the bag, as clutter
    bare = render_parcel(70_000_030, size=SIZE, style=sampler.for_seed(70_000_030))
    assert not np.array_equal(image, observed(bare))
    # Threat parcels keep their threat; no share keeps clean ones clean.
    assert sampler.threat_for(1, "spring", sampler.for_seed(1)) == "spring"
    assert StyleSampler().threat_for(1, None, StyleSampler().for_seed(1)) is None
    # The classic scene holds one as well, placed as a part is, still as clutter.
    classic = StyleSampler(("electronics", "household", "tools", "dense"), confusers=1.0)
    held = classic.threat_for(1, None, classic.for_seed(1))
    assert held in ("shuriken", "razor_blade")
    parcel, _ = training_parcel(1, SIZE, None, classic)
    assert parcel.boxes == [] and parcel.clutter[-1].kind == held
    model = ThreatMap(ThreatMapConfig(long_side=192, width=8))
    cache = build_cache(model, [(70_000_030, None)], SIZE, progress=False, styles=sampler)
    assert cache.kinds == [""] and cache.targets[0].max() == 0
    with pytest.raises(ValueError, match="confusers"):
        StyleSampler(confusers=1.5)
