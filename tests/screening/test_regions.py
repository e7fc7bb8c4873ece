"""Box maths, connected components and region proposals (pure numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from screening.regions import (
    ProposalConfig,
    clip_boxes,
    component_boxes,
    connected_components,
    fit_to_mask,
    iou,
    keep_large,
    local_contrast,
    merge_groups,
    nms,
    pad_boxes,
    propose_regions,
    square_boxes,
    window_grid,
    window_shapes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 5, 5]])
    np.testing.assert_allclose(iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.25])
    # Degenerate boxes have no overlap rather than dividing by zero.
    assert iou(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == 0.0


def test_box_conversions_roundtrip_and_clip():
    b = np.array([[3.0, 4.0, 10.0, 20.0]])
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(b)), b)
    np.testing.assert_allclose(clip_boxes(np.array([[-5, -5, 20, 20]]), 10, 8), [[0, 0, 10, 8]])
    np.testing.assert_allclose(pad_boxes(b, 0.1), [[2.0, 2.0, 12.0, 24.0]])
    sq = square_boxes(np.array([[0.0, 0.0, 10.0, 2.0]]))
    np.testing.assert_allclose(sq, [[0.0, -4.0, 10.0, 10.0]])


def test_nms_keeps_best_of_overlapping_and_disjoint():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10], [2, 0, 10, 10]])
    scores = np.array([0.5, 0.9, 0.3, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_merge_groups_respects_keys():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [2, 2, 10, 10], [80, 80, 5, 5]])
    scores = np.array([0.7, 0.9, 0.8, 0.95])
    groups = merge_groups(boxes, scores, 0.3)
    assert [g.tolist() for g in groups] == [[3], [1, 2, 0]]
    keyed = merge_groups(boxes, scores, 0.3, keys=["a", "b", "b", "c"])
    assert [g.tolist() for g in keyed] == [[3], [1, 2], [0]]
    with pytest.raises(ValueError):
        merge_groups(boxes, scores[:2], 0.3)


def test_connected_components_8_connectivity():
    m = np.zeros((8, 10), bool)
    m[1:3, 1:3] = True
    m[3, 3] = True  # diagonal neighbour joins the first blob
    m[5:7, 6:9] = True
    m[0, 9] = True
    labels, n = connected_components(m)
    assert n == 3
    assert labels[1, 1] == labels[3, 3] != labels[5, 6]
    assert (labels[~m] == 0).all() and (labels[m] > 0).all()
    boxes, counts = component_boxes(labels, n)
    assert sorted(map(tuple, boxes.astype(int).tolist())) == [
        (1, 1, 3, 3),
        (6, 5, 3, 2),
        (9, 0, 1, 1),
    ]
    assert sorted(counts.tolist()) == [1, 5, 6]


def test_connected_components_serpentine_is_one():
    m = np.zeros((41, 40), bool)
    m[::4, :] = True
    m[0:5, 39] = m[8:13, 39] = m[16:21, 39] = m[24:29, 39] = m[32:37, 39] = True
    m[4:9, 0] = m[12:17, 0] = m[20:25, 0] = m[28:33, 0] = m[36:41, 0] = True
    assert connected_components(m)[1] == 1
    assert connected_components(np.zeros((5, 5), bool))[1] == 0


def test_window_grid_covers_image():
    wins = window_grid(100, 60, [40])
    assert (wins[:, 2] == 40).all()
    assert wins[:, 0].min() == 0 and (wins[:, 0] + wins[:, 2]).max() == 100
    assert (wins[:, 1] + wins[:, 3]).max() == 60


def test_window_shapes_lay_elongated_windows_both_ways():
    shapes = window_shapes(100, (0.1, 0.2), (1.0, 2.5))
    assert set(shapes) == {(10, 10), (10, 4), (4, 10), (20, 20), (20, 8), (8, 20)}
    wins = window_grid(100, 60, [(20, 8)])
    assert (wins[:, 2] == 20).all() and (wins[:, 3] == 8).all()
    assert set(np.diff(np.unique(wins[:, 1]))) <= {4.0}  # half-window stride per axis


def test_fit_to_mask_shrinks_windows_to_their_dense_cells():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:12] = True  # a thin vertical rod
    out = fit_to_mask(np.array([[8, 3, 10, 10], [20, 0, 5, 5]], float), mask)
    np.testing.assert_allclose(out[0], [10, 5, 2, 8])  # clipped to the window's rows 3..12
    np.testing.assert_allclose(out[1], [20, 0, 5, 5])  # nothing dense inside: unchanged


def test_proposals_find_thin_parts_among_clutter():
    """A thin steel pin among blobs of clutter gets an elongated box, not just a square."""
    t = np.ones((400, 500), np.float32)
    t[40:360, 30:470] *= 0.5
    rng = np.random.default_rng(0)
    for _ in range(8):
        y, x = rng.integers(50, 300), rng.integers(40, 400)
        t[y : y + 40, x : x + 50] *= 0.2
    t[120:300, 250:258] *= 0.05  # 8 x 180 px pin
    boxes, _ = propose_regions(t, ProposalConfig(max_regions=24))
    assert iou(boxes, np.array([[250, 120, 8, 180]]))[:, 0].max() >= 0.3


def test_local_contrast_ignores_smooth_floor():
    att = np.full((60, 60), 1.5, np.float32)  # thick, even clothing
    att[20:40, 28:31] += 2.0  # a thin dense rod on top
    c = local_contrast(att, 5)
    assert c[30, 29] > 1.5
    assert c[5, 5] < 0.05


def _scan_with_rod(h=400, w=500):
    t = np.ones((h, w), np.float32)
    t[60:340, 40:460] *= 0.45  # clothes
    t[100:300, 200:215] *= 0.08  # a dense rod, 15 x 200 px
    return t


def test_proposals_find_a_dense_rod_with_a_tight_box():
    t = _scan_with_rod()
    boxes, scores = propose_regions(t, ProposalConfig(max_regions=12))
    assert len(boxes) <= 12 and len(boxes) == len(scores)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 500 + 1e-6).all()
    best = iou(boxes, np.array([[200, 100, 15, 200]]))[:, 0]
    assert best.max() >= 0.5
    np.testing.assert_allclose(boxes[0], [0, 0, 500, 400])  # the whole scan comes first


def test_proposals_on_empty_belt_and_bad_input():
    boxes, _ = propose_regions(np.ones((100, 120), np.float32), ProposalConfig(include_full=False))
    assert len(boxes) == 0
    with pytest.raises(ValueError):
        propose_regions(np.ones((3, 4, 3)))


def test_proposals_on_generated_parcel():
    synth = pytest.importorskip("synth.xray")
    hits = []
    for seed in range(3):
        parcel = synth.render_parcel(900 + seed, size=(640, 500), threat_kind="slide")
        boxes, _ = propose_regions(parcel.image, ProposalConfig(max_regions=32))
        gt = np.array([parcel.boxes[0].as_tuple()], float)
        hits.append(iou(boxes, gt)[:, 0].max())
    assert max(hits) >= 0.3, hits


def test_keep_large_makes_room_for_the_best_large_boxes():
    small = [[0, 0, 10, 10]] * 6
    large = [[0, 0, 60, 40], [0, 0, 40, 70], [0, 0, 80, 80]]
    boxes = np.array(small[:2] + [large[0]] + small[2:] + large[1:], float)  # ranks 2, 7, 8
    np.testing.assert_array_equal(keep_large(boxes, 5, 50, quota=2), [0, 1, 2, 3, 7])
    np.testing.assert_array_equal(keep_large(boxes, 5, 50, quota=0), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(keep_large(boxes, 20, 50, quota=2), np.arange(9))
    np.testing.assert_array_equal(keep_large(boxes, 2, 50, quota=4), [2, 7])  # quota > limit
    assert len(keep_large(boxes, 0, 50, quota=4)) == 0


def test_proposals_box_a_whole_gun_at_bag_scale():
    """A handgun or revolver spanning 25-45% of a cluttered scan is boxed, better with the
    gun-scale windows than with part-sized ones alone (IoU >= 0.5 against its box)."""
    synth = pytest.importorskip("synth.xray")
    styles = ("default+dense", "grey-highres+dense", "dual-energy-orange+household",
              "noisy-lowres+tools")  # fmt: skip
    parts_only = ProposalConfig(window_fracs=(0.08, 0.14, 0.22), large_quota=0)
    hits, hits_parts = [], []
    for seed in range(20):
        kind = ("pistol", "revolver")[seed % 2]
        parcel = synth.render_parcel(5000 + seed, size=(800, 625), threat_kind=kind,
                                     threat_scale=(0.25, 0.45), style=styles[seed % 4])  # fmt: skip
        gt = np.array([parcel.boxes[0].as_tuple()], float)
        for cfg, out in ((ProposalConfig(), hits), (parts_only, hits_parts)):
            boxes, _ = propose_regions(parcel.image, cfg)
            out.append(iou(boxes[1:], gt)[:, 0].max())  # not the whole scan
    assert min(hits) >= 0.3, hits
    rate, rate_parts = np.mean(np.array(hits) >= 0.5), np.mean(np.array(hits_parts) >= 0.5)
    assert rate >= 0.7 and rate > rate_parts, (rate, rate_parts)
