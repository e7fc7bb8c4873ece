"""Styled parcel scenes: a bag of a scene mix's clutter with an optional threat at true scale.

Unlike the default scene (``parcel.render_parcel``, threat sized as a share of the image),
everything here is at physical scale times a fan-beam magnification: a whole handgun spans
about a quarter to a half of the bag, a firing pin a few per cent, and a long gun arrives in
a container long enough to hold it.  The threat lies at any angle and flip; clutter is drawn
from the mix's family, and with the mix's ``overlap_prob`` some of it is stacked on the threat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.bag import (
    OBJECT_THRESHOLD,
    bag_background,
    lay_part,
    paste,
    position,
)
from synth.materials import attenuation
from synth.projection import Box, tight_box
from synth.shapes import LONG_GUN_KINDS, Part, any_kind, render_sketch
from synth.sketch import Sketch
from synth.styles import SceneMix


@dataclass(frozen=True)
class Composed:
    """A composed scene: both energies' transmissions and what lies where."""

    high: np.ndarray
    low: np.ndarray
    boxes: list[Box]
    clutter: list[Box]
    mm_per_px: float
    container: str
    threat_mask: np.ndarray | None


def _placed_part(rng: np.random.Generator, kind: str, sk: Sketch, pitch: float, region,
                 angle: float, flip: bool) -> Part:
    """At ``pitch`` and ``angle`` if it fits the region, else turned along it, else shrunk."""
    rw, rh = region[2] - region[0], region[3] - region[1]
    aligned = rng.uniform(-12, 12) + (90.0 if rh > rw else 0.0)
    for a in (angle, aligned):
        part = render_sketch(kind, sk, mm_per_px=pitch, angle_deg=float(a), flip=flip)
        ph, pw = part.thickness.shape
        if ph <= rh and pw <= rw:
            return part
    shrink = max(ph / rh, pw / rw)
    return render_sketch(kind, sk, mm_per_px=pitch * shrink, angle_deg=float(aligned), flip=flip)


def _lay(rng: np.random.Generator, kind: str, mix: SceneMix, pitch: float, region, acc: dict,
         centre=None) -> list[Box]:
    """Lay one item of ``kind`` into the bag (``acc``, attenuation by energy); its box, if
    any of it shows."""
    sk = any_kind(kind).sketch(rng)
    item_mag = float(rng.uniform(*mix.magnification))
    part = _placed_part(rng, kind, sk, pitch / item_mag, region, float(rng.uniform(0, 360)),
                        bool(rng.random() < 0.5))
    return lay_part(rng, part, kind, region, acc, centre)


def compose(rng: np.random.Generator, size: tuple[int, int], mix: SceneMix,
            threat_kind: str | None = None, n_clutter: int | None = None, *,
            extra: tuple[str, np.random.Generator] | None = None) -> Composed:
    """Render a bag of ``mix`` on a (width, height) canvas, with ``threat_kind`` if given.

    ``extra`` = (kind, its own generator): one more item laid in last, as clutter (no threat
    box), drawn from that generator only, so the bag is otherwise the bag without it.
    """
    w, h = size
    threat_sk = any_kind(threat_kind).sketch(rng) if threat_kind is not None else None
    mag = float(rng.uniform(*mix.magnification))
    container = str(rng.choice(mix.containers))
    bag_mm = float(rng.uniform(*mix.bag_mm))
    if threat_sk is not None:
        x0, y0, x1, y1 = threat_sk.extent()
        if threat_kind in LONG_GUN_KINDS:  # a long carton, case or bag that holds it
            container = "carton" if rng.random() < 0.6 else "soft_bag"
            bag_mm = max(bag_mm, (x1 - x0) * mag * float(rng.uniform(1.05, 1.25)))
    bw_px, bh_px = w * rng.uniform(0.8, 0.94), h * rng.uniform(0.78, 0.92)
    pitch = bag_mm / bw_px
    cxp = w / 2 + rng.uniform(-0.4, 0.4) * (w - bw_px)
    cyp = h / 2 + rng.uniform(-0.4, 0.4) * (h - bh_px)
    acc, region, clutter = bag_background(rng, container, cxp, cyp, bw_px, bh_px, pitch, w, h,
                                          mix.clothes_prob)
    boxes: list[Box] = []
    mask = None
    stacked: list[tuple[float, float]] = []
    if threat_sk is not None:
        part = _placed_part(rng, threat_kind, threat_sk, pitch / mag, region,
                            float(rng.uniform(0, 360)), bool(rng.random() < 0.5))
        att = {e: attenuation(part.layers, e) for e in ("high", "low")}
        x, y = position(rng, att["high"].shape, region)
        paste(acc["low"], att["low"], x, y)
        sy, sx, crop = paste(acc["high"], att["high"], x, y)
        own = np.exp(-crop) < OBJECT_THRESHOLD
        box = tight_box(own, threat_kind, x0=sx.start, y0=sy.start)
        if box is not None:
            boxes.append(box)
            mask = np.zeros((h, w), bool)
            mask[sy, sx] = own
            if rng.random() < mix.overlap_prob:
                stacked = [(box.x + rng.uniform(0, box.w), box.y + rng.uniform(0, box.h))
                           for _ in range(int(rng.integers(mix.stack[0], mix.stack[1] + 1)))]
    lo, hi = mix.n_clutter
    n = int(rng.integers(lo, hi + 1)) if n_clutter is None else int(n_clutter)
    for centre in [None] * n + stacked:
        clutter += _lay(rng, str(rng.choice(mix.clutter)), mix, pitch, region, acc, centre)
    if extra is not None:
        clutter += _lay(extra[1], extra[0], mix, pitch, region, acc)
    return Composed(np.exp(-acc["high"]), np.exp(-acc["low"]), boxes, clutter, pitch, container,
                    mask)


__all__ = ["Composed", "compose"]
