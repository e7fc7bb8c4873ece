"""Station adaptation of the threat map: projections, the split, the budget, the gate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from matcher.threatmap import load_threatmap
from synth.detector import detector_response
from synth.shapes import THREAT_KINDS
from synth.xray import render_isolated, render_parcel
from training.xray import adapt as adapt_module
from training.xray.adapt import (
    AdaptConfig,
    Costs,
    adapt_threatmap,
    fastest,
    holdout_count,
    measure_costs,
    mix_heads,
    project_reference,
    reference_patches,
    scan_noise,
    size_kind,
    split_holdout,
    station_gain,
    station_measure,
    station_samples,
)
from training.xray.threatmap import Cache, fit_head, head_state

# One projection per scan, however much time is left (``max_projections``), unless a test
# says otherwise.
QUICK = AdaptConfig(
    epochs=2, gate_parcels=6, holdout=0.5, minutes=30, projections=1, max_projections=1
)


def _cleared(n: int) -> list[np.ndarray]:
    return [
        render_parcel(700 + i, size=(400, 320), threat_kind=None, n_clutter=3).image
        for i in range(n)
    ]


def _refs() -> list[np.ndarray]:
    return [render_isolated(k, 5, 128).transmission for k in ("slide", "barrel")]


def test_reference_patches_crop_to_the_object_and_refuse_an_empty_one():
    t = np.ones((50, 60), np.float32)
    t[10:20, 30:45] = 0.3
    (patch,) = reference_patches([t])
    assert patch.shape == (10, 15) and patch.max() < 0.98
    with pytest.raises(ValueError, match="no object"):
        reference_patches([t, np.ones((5, 5), np.float32)])
    with pytest.raises(ValueError, match="no X-ray threat references"):
        reference_patches([])


@pytest.mark.parametrize("scale", [(0.08, 0.1), (0.45, 0.45)])
def test_projection_lands_inside_with_its_mask(scale):
    scan = _cleared(1)[0]
    patch = reference_patches(_refs())[1]
    rng = np.random.default_rng(3)
    for _ in range(5):
        image, mask = project_reference(scan, patch, rng, scale)
        assert image.shape == scan.shape and mask.shape == scan.shape and mask.any()
        # Multiplicative: the object only darkens, and only where it lies.
        assert np.all(image <= scan + 1e-6)
        assert np.allclose(image[~mask], scan[~mask], atol=0.03)
        ys, xs = np.nonzero(mask)
        side = max(np.ptp(ys), np.ptp(xs)) + 1
        assert side <= max(scan.shape) * scale[1] * 1.05 + 6  # + the point spread's reach


def _noisy_belt(noise: float) -> np.ndarray:
    t = np.full((300, 400), 0.92, np.float32)
    t[200:280, 40:200] = 0.5  # some clutter
    return detector_response(t, np.random.default_rng(1), noise=noise, blur_sigma=0.0)


@pytest.mark.parametrize("noise", [0.01, 0.03])
def test_scan_noise_reads_the_detector_noise(noise):
    assert scan_noise(_noisy_belt(noise)) == pytest.approx(noise, rel=0.15)


def test_a_projected_object_carries_the_noise_its_darkness_brings():
    # Multiplying alone would leave the object 0.3 x the belt's noise; a detector seeing a
    # transmission of 0.92 x 0.3 shows noise * (sqrt(0.276) + 0.15).
    scan = _noisy_belt(0.03)
    yy, xx = np.mgrid[:61, :61]
    patch = np.where((yy - 30) ** 2 + (xx - 30) ** 2 <= 900, 0.3, 1.0).astype(np.float32)
    image, mask = project_reference(scan, patch, np.random.default_rng(2), (0.15, 0.15))
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2  # a disc: any angle
    inner = image[cy - 18 : cy + 18, cx - 18 : cx + 18]
    assert inner.mean() == pytest.approx(0.276, abs=0.01)
    assert inner.std() == pytest.approx(0.03 * (np.sqrt(0.276) + 0.15), rel=0.2)


@pytest.mark.parametrize("blur, least, most", [((0.0, 0.0), 0, 1), ((1.4, 1.4), 3, 9)])
def test_a_projected_object_edge_is_blurred_like_the_scanner(monkeypatch, blur, least, most):
    monkeypatch.setattr(adapt_module, "PROJECTION_BLUR", blur)
    scan = np.full((300, 400), 0.92, np.float32)
    patch = np.full((61, 61), 0.3, np.float32)
    image, mask = project_reference(scan, patch, np.random.default_rng(2), (0.15, 0.15), 0.0)
    ys, xs = np.nonzero(mask)
    row = image[(ys.min() + ys.max()) // 2, xs.min() - 6 : (xs.min() + xs.max()) // 2]
    assert least <= np.count_nonzero((row > 0.33) & (row < 0.89)) <= most


def test_split_and_samples():
    train, held = split_holdout(10, QUICK)
    assert len(held) == 5 and sorted(train + held) == list(range(10))
    assert split_holdout(10, QUICK) == (train, held)  # seeded
    with pytest.raises(ValueError, match="more cleared scans"):
        split_holdout(2, QUICK)
    patches = reference_patches(_refs())
    samples = list(station_samples(_cleared(2), patches, 2, (0.1, 0.12), 0, small_part=0.15))
    assert [k for _, _, k in samples] == ["", "projected small", "projected small"] * 2
    assert samples[0][1] is None and all(m.any() for _, m, k in samples if k)
    large = list(station_samples(_cleared(1), patches, 2, (0.3, 0.4), 0, small_part=0.15))
    assert [k for _, _, k in large] == ["", "projected large", "projected large"]


def test_size_kind_reads_the_object_longer_side():
    mask = np.zeros((100, 200), bool)
    mask[10:20, 50:79] = True  # 29 px of 200: below 0.15
    assert size_kind(mask, 0.15) == "projected small"
    mask[10:20, 50:80] = True  # 30 px: not below
    assert size_kind(mask, 0.15) == "projected large"


def test_projected_sizes_are_drawn_log_uniformly():
    # As many small parts (0.04-0.134, the geometric middle) as larger objects (to 0.45).
    scan, patch = _cleared(1)[0], reference_patches(_refs())[0]
    rng = np.random.default_rng(0)
    sides = []
    for _ in range(200):
        _, mask = project_reference(scan, patch, rng, (0.04, 0.45))
        ys, xs = np.nonzero(mask)
        sides.append((max(np.ptp(ys), np.ptp(xs)) + 1) / max(scan.shape))
    assert 0.4 < np.mean(np.array(sides) < np.sqrt(0.04 * 0.45)) < 0.6


def test_station_measure_takes_small_parts_and_larger_objects_apart(monkeypatch):
    kinds = ["", "", "projected small", "projected small", "projected large"]
    scores = np.array([0.0, 1.0, 0.5, 2.0, 3.0])  # each sample's highest logit
    monkeypatch.setattr(adapt_module, "scan_scores", lambda model, cache: scores[: len(cache)])
    out = station_measure(None, Cache([[]], [], kinds))
    assert out["auc_small"] == 0.75 and out["auc_large"] == 1.0
    assert out["auc_worst"] == 0.75 and out["auc"] == pytest.approx(5 / 6)
    # No large object drawn: None (the report stays JSON), and the worst is the small parts'.
    out = station_measure(None, Cache([[]], [], kinds[:4]))
    assert out["auc_large"] is None and out["auc_worst"] == 0.75


def test_the_station_gain_is_the_smaller_of_the_sizes():
    before = {"auc": 0.90, "auc_small": 0.80, "auc_large": 0.95}
    after = {"auc": 0.93, "auc_small": 0.78, "auc_large": 0.99}  # whole guns up, parts down
    assert station_gain(before, after) == pytest.approx(-0.02)
    only = {"auc": 0.9, "auc_small": None, "auc_large": 0.9}
    assert station_gain(only, {**only, "auc_large": 0.95}) == pytest.approx(0.05)
    none = {"auc": 0.9, "auc_small": None, "auc_large": None}
    assert station_gain(none, {**none, "auc": 0.8}) == pytest.approx(-0.1)


def test_adapt_reports_and_gates(tiny_map):
    base = load_threatmap(tiny_map[0])
    scans = _cleared(6)
    res = adapt_threatmap(base, scans, _refs(), QUICK, progress=False)
    rep = res.report
    assert rep["held_out_scans"] == 3 and rep["training_scans"] == 3
    assert len(res.holdout) == 3 and len(rep["history"]) == QUICK.epochs
    # each epoch's seconds beside the plan's, to see where the plan is wrong
    assert all(r["seconds"] > 0 for r in rep["history"]) and rep["planned_epoch_s"] > 0
    for when in ("before", "after"):
        for where in ("station", "generated"):
            assert 0.0 <= rep[when][where]["auc"] <= 1.0
    drop = rep["before"]["generated"]["auc"] - rep["after"]["generated"]["auc"]
    gain = station_gain(rep["before"]["station"], rep["after"]["station"])
    assert rep["gate"]["station_auc_gain"] == pytest.approx(gain, abs=1e-4)
    assert res.accepted == (drop <= QUICK.gate_margin and gain >= 0)
    # The base map is not touched; the adapted one is a different head.
    assert base.map_id == load_threatmap(tiny_map[0]).map_id
    moved = [
        k for k, v in res.model.state_dict().items()
        if not k.startswith("trunk.") and not np.allclose(v.numpy(), base.state_dict()[k].numpy())
    ]  # fmt: skip
    assert moved
    refused = adapt_threatmap(base, scans, _refs(), replace(QUICK, gate_margin=-1.0), False)
    assert not refused.accepted and not refused.report["gate"]["accepted"]


def test_the_kept_head_is_the_mean_of_the_fine_tuned_and_the_base_weights(tiny_map):
    base = load_threatmap(tiny_map[0])
    scans = _cleared(6)
    alone = adapt_threatmap(base, scans, _refs(), replace(QUICK, base_share=0.0), False)
    mixed = adapt_threatmap(base, scans, _refs(), replace(QUICK, base_share=0.25), False)
    # The same training (same seeds), then a quarter of the base map's weights.
    assert mixed.report["tuned"] == alone.report["after"]
    tuned, kept, old = (m.state_dict() for m in (alone.model, mixed.model, base))
    heads = [k for k in kept if not k.startswith("trunk.") and kept[k].is_floating_point()]
    assert heads
    for k in heads:
        np.testing.assert_allclose(
            kept[k].numpy(), 0.75 * tuned[k].numpy() + 0.25 * old[k].numpy(), atol=1e-6
        )
    for k in kept:
        if k.startswith("trunk."):
            assert np.array_equal(kept[k].numpy(), old[k].numpy())
    with pytest.raises(ValueError, match="base_share"):
        adapt_threatmap(base, scans, _refs(), replace(QUICK, base_share=1.0), False)


def test_mixing_heads_weighs_each_weight_and_mixing_back_recovers_the_fine_tuned_one(tiny_map):
    base = load_threatmap(tiny_map[0])
    other = load_threatmap(tiny_map[0])
    name, weight = next((k, v) for k, v in other.state_dict().items() if k.startswith("head"))
    with torch.no_grad():
        weight.add_(1.0)
    mix_heads(other, base, 0.5)
    assert np.allclose(other.state_dict()[name].numpy(), base.state_dict()[name].numpy() + 0.5)
    mix_heads(other, base, -1.0)  # share s = 0.5 mixed back: -s / (1 - s)
    assert np.allclose(other.state_dict()[name].numpy(), base.state_dict()[name].numpy() + 1.0)
    mix_heads(other, base, 1.0)
    assert np.array_equal(other.state_dict()[name].numpy(), base.state_dict()[name].numpy())
    for bad in (1.5, float("nan")):
        with pytest.raises(ValueError, match="base_share"):
            mix_heads(other, base, bad)


def test_adapt_needs_references_and_scans(tiny_map):
    base = load_threatmap(tiny_map[0])
    with pytest.raises(ValueError, match="threat references"):
        adapt_threatmap(base, _cleared(4), [], QUICK, progress=False)
    with pytest.raises(ValueError, match="more cleared scans"):
        adapt_threatmap(base, _cleared(1), _refs(), QUICK, progress=False)


def test_adapt_rehearses_generated_parcels_among_the_station_samples(tiny_map, monkeypatch):
    seen = []

    def recording_fit(model, train, val, cfg, progress, **kwargs):
        seen.append(list(train.kinds))
        return fit_head(model, train, val, cfg, progress, **kwargs)

    monkeypatch.setattr(adapt_module, "fit_head", recording_fit)
    base, scans = load_threatmap(tiny_map[0]), _cleared(6)
    res = adapt_threatmap(base, scans, _refs(), replace(QUICK, rehearsal=1.0), False)
    station = ("", "projected small", "projected large")
    generated = [k for k in seen[0] if k not in station]
    # 3 training scans, each a negative and one projection: 6 station samples, 6 parcels of
    # which every third is clean and the others carry generated parts.
    assert res.report["rehearsal_parcels"] == 6 and len(seen[0]) == 12
    assert sum(k.startswith("projected") for k in seen[0]) == 3 and len(generated) == 4
    assert set(generated) <= set(THREAT_KINDS)
    adapt_threatmap(base, scans, _refs(), replace(QUICK, rehearsal=0.0), False)
    assert len(seen[1]) == 6 and set(seen[1]) <= set(station) and "" in seen[1]
    with pytest.raises(ValueError, match="rehearsal"):
        adapt_threatmap(base, scans, _refs(), replace(QUICK, rehearsal=-0.5), False)


def test_the_plan_counts_every_piece_of_a_scan():
    costs = Costs(
        scan=1.0, parcel=2.0, step=0.1, parcel_step=0.05, score=0.05, projection=0.3,
        read=0.2, calibrate=0.5,
    )  # fmt: skip
    cfg = AdaptConfig(minutes=15, epochs=8, rehearsal=1.0, gate_parcels=60, projections=1)
    # A training scan: read 0.2 + 2 samples x (1 + 8 x 0.1) + 1 projection x 0.3 + 2
    # rehearsal parcels x (2 + 8 x 0.05) = 8.9 s. A held-out one: read 0.2 + 2 x (1 + 11 x
    # 0.05) + 0.3 + screened 0.5 = 4.1 s (scored once an epoch, before, fine-tuned and mixed).
    # The gate: 60 x (2 + 3 x 0.05) = 129 s.
    assert holdout_count(200, cfg) == 80 and holdout_count(3, cfg) == cfg.min_holdout
    # Caching 120 training and 80 held-out scans: 200 x (2 x 1 + 0.3) + (240 rehearsal + 60
    # gate parcels) x 2 = 1060 s; an epoch 2 x (120 x (0.1 + 0.05) + 80 x 0.05) = 44 s.
    assert costs.caching(cfg, 120, 80) == pytest.approx(1060.0)
    assert costs.epoch(cfg, 120, 80) == pytest.approx(44.0)
    assert costs.seconds(cfg, 200) == pytest.approx(80 * 4.1 + 120 * 8.9 + 129)
    # 200 scans need 1525 s; 900 s hold the most scans whose plan fits.
    fit = costs.scans_that_fit(cfg, 200, 900.0)
    assert costs.seconds(cfg, fit) <= 900.0 < costs.seconds(cfg, fit + 1)
    assert costs.scans_that_fit(cfg, 200, 2000.0) == 200  # all of them, no more
    slow = replace(costs, projection=3.0)
    assert slow.scans_that_fit(cfg, 200, 900.0) < fit
    assert costs.scans_that_fit(replace(cfg, rehearsal=0.0), 200, 900.0) > fit
    assert costs.scans_that_fit(replace(cfg, epochs=16), 200, 900.0) < fit
    # Never fewer than one training scan and its held-out ones, nor more than there are.
    assert costs.scans_that_fit(cfg, 200, 1.0) == cfg.min_holdout + 1
    assert costs.scans_that_fit(cfg, 2, 1.0) == 2
    # 20 scans (8 held out) take 268.6 s with one projection each; a projection more costs a
    # training scan 4.2 + 0.3 s and a held-out one 1.55 + 0.3 s: 337.4 s with two, 406.2 with
    # three, 475.0 with four.
    assert costs.seconds(replace(cfg, projections=2), 20) == pytest.approx(337.4)
    assert costs.projections_that_fit(cfg, 20, 400.0) == 2
    assert costs.projections_that_fit(cfg, 20, 406.3) == cfg.max_projections == 3
    assert costs.projections_that_fit(replace(cfg, max_projections=4), 20, 475.1) == 4
    assert costs.projections_that_fit(replace(cfg, max_projections=4), 20, 474.9) == 3
    assert costs.projections_that_fit(cfg, 20, 100.0) == 1  # never fewer than asked
    assert costs.projections_that_fit(replace(cfg, projections=2), 20, 100.0) == 2


# A plan where each station sample costs 1 s and screening a held-out scan 1 s more.
SAMPLE_SECOND = Costs(
    scan=1.0, parcel=0.0, step=0.0, parcel_step=0.0, score=0.0, projection=0.0, calibrate=1.0
)


def test_adapt_leaves_out_the_scans_its_time_does_not_hold(tiny_map):
    base = load_threatmap(tiny_map[0])
    scans = _cleared(8)
    cfg = replace(QUICK, holdout=0.4)
    costs = SAMPLE_SECOND
    # Each scan costs 2 s (two samples) and a held-out one 1 s more: 5 scans (2 held out)
    # take 12 s, 6 take 14 s, and the plan fills PLAN_SHARE of the 15 s given.
    assert costs.seconds(cfg, 5) == 12.0 and costs.seconds(cfg, 6) == 14.0
    res = adapt_threatmap(base, scans, _refs(), cfg, False, costs, seconds=15.0)
    rep = res.report
    assert rep["cleared_scans"] == 8 and rep["held_out_scans"] == 2
    assert rep["training_scans"] == 3 and len(res.holdout) == 2
    assert set(res.holdout) <= set(range(8)) and rep["planned_s"] == 12.0
    # Given all the time they need, every scan is used and every epoch run.
    res = adapt_threatmap(base, scans, _refs(), cfg, False, costs, seconds=100.0)
    assert res.report["training_scans"] + res.report["held_out_scans"] == 8
    assert res.report["epochs_trained"] == cfg.epochs
    # Past its time, the fewest scans, and no epoch begun after the first.
    res = adapt_threatmap(base, scans, _refs(), replace(cfg, epochs=3), False, costs, 0.5)
    assert res.report["training_scans"] + res.report["held_out_scans"] == cfg.min_holdout + 1
    assert res.report["epochs_trained"] == len(res.report["history"]) == 1


def test_epochs_end_in_time_for_what_follows_them_within_the_plans_share(tiny_map):
    base = load_threatmap(tiny_map[0])
    scans = _cleared(4)

    # Only screening a held-out scan costs anything: 2 held out, so what follows the epochs
    # is planned at 2 x ``calibrate`` of the 1000 s given, and the epochs (a fraction of a
    # second each here) must end by PLAN_SHARE x 1000 s less that.
    def run(calibrate: float) -> dict:
        costs = replace(SAMPLE_SECOND, scan=0.0, calibrate=calibrate)
        return adapt_threatmap(base, scans, _refs(), QUICK, False, costs, seconds=1000.0).report

    rep = run(400.0)  # 800 s after them: 100 s left for the epochs, enough for every one
    assert rep["held_out_scans"] == 2 and rep["epochs_trained"] == QUICK.epochs
    rep = run(475.0)  # 950 s after them: within 1000 s, but past 900 s, so only the first
    assert rep["held_out_scans"] == 2 and rep["epochs_trained"] == 1


def test_time_to_spare_draws_more_projections_on_each_scan(tiny_map):
    base = load_threatmap(tiny_map[0])
    scans = _cleared(4)
    cfg = replace(QUICK, max_projections=3)
    costs = SAMPLE_SECOND
    # 2 training and 2 held-out scans, 1 s a sample and a held-out scan 1 s more: 10 s with one
    # projection each, 14 s with two, 18 s with three; the plan fills PLAN_SHARE of the time.
    assert [costs.seconds(replace(cfg, projections=p), 4) for p in (1, 2, 3)] == [10, 14, 18]
    res = adapt_threatmap(base, scans, _refs(), cfg, False, costs, seconds=17.0)
    rep = res.report
    assert rep["config"]["projections"] == 2 and rep["training_scans"] == 2
    assert rep["rehearsal_parcels"] == 2 * 3  # a parcel per station sample: 3 per scan
    res = adapt_threatmap(base, scans, _refs(), cfg, False, costs, seconds=100.0)
    assert res.report["config"]["projections"] == 3  # no more than max_projections
    # When the budget does not hold every scan, scans come first: one projection each.
    res = adapt_threatmap(base, scans, _refs(), cfg, False, costs, seconds=10.0)
    assert res.report["config"]["projections"] == 1 and res.report["training_scans"] == 1
    with pytest.raises(ValueError, match="max_projections"):
        adapt_threatmap(base, scans, _refs(), replace(cfg, projections=2, max_projections=1))


def test_costs_are_measured_on_this_machine(tiny_map, monkeypatch):
    patch = reference_patches(_refs())[0]
    sizes, steps = [], []
    projecting, stepping = adapt_module.project_reference, adapt_module.train_step
    monkeypatch.setattr(
        adapt_module,
        "project_reference",
        lambda scan, patch, rng, scale_range: (
            sizes.append(scale_range) or projecting(scan, patch, rng, scale_range)
        ),
    )
    # the step is timed through the training loop's own step, on a batch of the run's size
    monkeypatch.setattr(
        adapt_module,
        "train_step",
        lambda model, opt, cache, idx, *rest: (
            steps.append(len(idx)) or stepping(model, opt, cache, idx, *rest)
        ),
    )
    model = load_threatmap(tiny_map[0])
    head = head_state(model)
    costs = measure_costs(model, _cleared(1)[0], patch, batch_size=4, scale_range=(0.3, 0.4))
    assert 0 < costs.score < costs.scan < costs.parcel and costs.step > 0 < costs.projection
    assert costs.parcel_step > 0 and costs.read == costs.calibrate == 0.0  # the caller's
    # projected at the run's sizes, not the default ones, once per timing
    assert sizes == [(0.3, 0.4)] * adapt_module.TIMING_REPEAT
    # station scans and generated parcels, each timed as often
    assert steps == [4] * (2 * adapt_module.TIMING_REPEAT)
    # the optimizer's steps while timing leave the head it will train as it was
    after = head_state(model)
    assert all(torch.equal(head[k], after[k]) for k in head)
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_a_cost_is_the_fastest_of_its_timings(monkeypatch):
    # A first call that pays one-time costs (5 s here) must not set the plan.
    ticks = iter([0.0, 5.0, 5.0, 6.0, 6.0, 9.0])
    monkeypatch.setattr(adapt_module.time, "perf_counter", lambda: next(ticks))
    calls = []
    result, seconds = fastest(lambda: calls.append(1) or len(calls), repeat=3)
    assert (result, seconds, len(calls)) == (3, 1.0, 3)


def test_batches_of_scans_of_several_sizes_are_counted_for_the_schedule():
    targets = [np.zeros((2, 3), np.float16)] * 5 + [np.zeros((3, 3), np.float16)] * 2
    cache = Cache([[np.zeros((1, 1, 1), np.float16)] * 7], targets, [""] * 7)
    assert cache.n_batches(2) == len(list(cache.batches(np.arange(7), 2))) == 4


def test_batches_of_two_shapes_interleave_in_the_epoch_order():
    # Station scans and generated parcels differ in size; one shape's batches must not all
    # come before the other's, or each epoch would end on one kind of data.
    targets = [np.zeros((2, 3), np.float16)] * 4 + [np.zeros((3, 3), np.float16)] * 4
    cache = Cache([[np.zeros((1, 1, 1), np.float16)] * 8], targets, [""] * 8)
    order = np.array([0, 4, 1, 5, 2, 6, 3, 7])
    chunks = [c.tolist() for c in cache.batches(order, 2)]
    assert chunks == [[0, 1], [4, 5], [2, 3], [6, 7]]


def test_adapt_trains_on_scans_of_several_sizes(tiny_map):
    # A station's scans need not share a size; each map shape makes its own batches, so an
    # epoch has more batches than scans / batch size (the schedule once ran out mid-training).
    scans = [
        render_parcel(700 + i, size=(400, 240 + 40 * i), threat_kind=None, n_clutter=3).image
        for i in range(8)
    ]
    cfg = replace(QUICK, batch_size=4)
    res = adapt_threatmap(load_threatmap(tiny_map[0]), scans, _refs(), cfg, progress=False)
    assert len(res.report["history"]) == cfg.epochs
