"""How well a box fits the threat map's hot area (matcher.threatmap.box_fit)."""

from __future__ import annotations

import numpy as np

from matcher.threatmap import MapResult, box_fit


def _map() -> MapResult:
    logits = np.full((40, 50), -5.0, np.float32)
    logits[10:14, 10:14] = 4.0  # a hot part: cells 10..13
    logits[20:30, 25:45] = 4.0  # a hot gun: rows 20..29, columns 25..44
    return MapResult(logits, (10.0, 10.0))  # 10 x 10 px cells


def test_a_tight_box_fits_better_than_a_window_holding_it_or_a_piece_of_a_gun():
    boxes = np.array(
        [
            [100, 100, 40, 40],  # tight round the part
            [60, 60, 160, 160],  # a large window holding the part
            [250, 200, 200, 100],  # the whole gun
            [250, 200, 60, 60],  # a piece of the gun
            [0, 350, 40, 40],  # nothing hot
        ],
        float,
    )
    fit = box_fit(_map(), boxes, threshold=-1.0)
    assert fit[0] > 0.9 and fit[2] > 0.9
    assert fit[1] < 0.2 and fit[3] < 0.5
    assert fit[4] == 0.0
    assert box_fit(_map(), np.zeros((0, 4)), -1.0).shape == (0,)
