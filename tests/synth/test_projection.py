"""Threat image projection maths on transmission images."""

from __future__ import annotations

import numpy as np
import pytest

from synth.projection import (
    Box,
    from_transmission,
    project,
    random_projection,
    tight_box,
    to_transmission,
    transform_object,
)


def _object() -> np.ndarray:
    """A 20 x 30 isolated scan: empty margin, a dark bar and a darker notch."""
    obj = np.ones((20, 30), np.float32)
    obj[5:15, 4:26] = 0.3
    obj[5:8, 20:26] = 0.1
    return obj


def test_tight_box_of_mask():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert tight_box(mask, "x") == Box(3, 2, 6, 3, "x")
    assert tight_box(mask, x0=10, y0=20).as_tuple() == (13, 22, 6, 3)
    assert tight_box(np.zeros((4, 4), bool)) is None


def test_project_on_empty_belt_is_exact_placement():
    bg = np.ones((60, 80), np.float32)
    obj = _object()
    out, box = project(bg, obj, x=17, y=9)
    np.testing.assert_array_equal(out[9:29, 17:47], obj)
    untouched = np.ones_like(out, bool)
    untouched[9:29, 17:47] = False
    assert np.all(out[untouched] == 1.0)
    assert box == Box(17 + 4, 9 + 5, 22, 10)
    assert np.all(bg == 1.0), "background must not be modified in place"


def test_box_matches_projected_object_pixels():
    bg = np.ones((50, 50), np.float32)
    out, box = project(bg, _object(), scale=1.3, angle_deg=33, x=3, y=2)
    assert box == tight_box(out < 0.98)


def test_projection_multiplies_transmissions():
    rng = np.random.default_rng(0)
    bg = rng.uniform(0.2, 1.0, (40, 50)).astype(np.float32)
    obj = _object()
    out, _ = project(bg, obj, x=10, y=12)
    np.testing.assert_allclose(out[12:32, 10:40], bg[12:32, 10:40] * obj, rtol=1e-6)
    np.testing.assert_array_equal(out[:12], bg[:12])


def test_rotation_by_90_is_counter_clockwise_with_expanded_canvas():
    obj = _object()
    rot = transform_object(obj, angle_deg=90)
    assert rot.shape == (30, 20)
    np.testing.assert_allclose(rot, np.rot90(obj), atol=1e-5)


def test_scale_two_doubles_the_box():
    bg = np.ones((100, 100), np.float32)
    _, box = project(bg, _object(), scale=2.0, x=0, y=0)
    assert abs(box.w - 44) <= 2 and abs(box.h - 20) <= 2
    assert box.x in (7, 8, 9) and box.y in (9, 10, 11)


def test_rotation_fills_with_empty_belt():
    rot = transform_object(_object(), angle_deg=45)
    assert rot.shape[0] > 30 and rot.shape[1] > 30
    assert rot[0, 0] == pytest.approx(1.0) and rot[-1, -1] == pytest.approx(1.0)
    assert rot.min() == pytest.approx(0.1, abs=0.05)


def test_clipping_at_border_gives_clipped_box():
    bg = np.ones((40, 40), np.float32)
    obj = _object()
    out, box = project(bg, obj, x=-10, y=30)
    # object pixels 4..25 in x land at -6..15; rows 5..14 land at 35..44
    assert box == Box(0, 35, 16, 5)
    np.testing.assert_array_equal(out[30:40, 0:20], obj[0:10, 10:30])
    out, box = project(bg, obj, x=40, y=0)
    assert box is None and np.all(out == 1.0)


def test_transmission_round_trips():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(from_transmission(to_transmission(u8)), u8)
    u16 = (np.arange(4096, dtype=np.uint16) << 4).reshape(64, 64)
    t = to_transmission(u16)
    assert t.dtype == np.float32 and t.max() <= 1.0
    np.testing.assert_array_equal(from_transmission(t, np.uint16), u16)
    assert to_transmission(np.array([[255]], np.uint8))[0, 0] == 1.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        to_transmission(np.array([[1.5]], np.float32))
    with pytest.raises(TypeError):
        to_transmission(np.array([[3]], np.int32))
    with pytest.raises(ValueError):
        project(np.full((10, 10), 255, np.uint8), _object())
    with pytest.raises(ValueError):
        transform_object(_object(), scale=0.0)


def test_random_projection_is_deterministic_and_inside():
    bg = np.ones((120, 160), np.float32)
    a, box_a = random_projection(bg, _object(), np.random.default_rng(5))
    b, box_b = random_projection(bg, _object(), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert box_a == box_b
    assert Box(0, 0, 160, 120).contains(box_a)
    assert box_a == tight_box(a < 0.98)
