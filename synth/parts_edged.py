"""Sketches (mm) of prohibited items that are not firearm parts: throwing stars and razor
blades.

The maintainers' real-scan negatives hold them (a shuriken or a razor blade in a bag with no
gun): a firearm screen must not alert on a flat steel star or blade. They are drawn only
when asked for by name (``benchmarks.xray_domain --confusers``); no scene's clutter draws
them, so the generator's other parcels are unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from synth.sketch import Sketch


def draw_shuriken(sk: Sketch, rng: np.random.Generator) -> None:
    """Throwing star: a flat steel star of 4-8 points round a central hole."""
    n = int(rng.integers(4, 9))
    outer = rng.uniform(40, 55)
    inner = outer * rng.uniform(0.28, 0.45)
    twist = rng.uniform(-0.25, 0.25) * math.pi / n  # swept points
    pts = []
    for k in range(2 * n):
        r = outer if k % 2 == 0 else inner
        a = math.pi * k / n + (twist if k % 2 else 0.0)
        pts.append((r * math.cos(a), r * math.sin(a)))
    depth = rng.uniform(1.5, 3.0)
    sk.polygon("steel", pts, depth)
    sk.ellipse("steel", 0, 0, inner * 0.45, inner * 0.45, depth + 1, cut=True)
    if rng.random() < 0.5:  # holes through the points' bases
        for k in range(n):
            a = 2 * math.pi * k / n
            sk.ellipse("steel", inner * 1.1 * math.cos(a), inner * 1.1 * math.sin(a), 2.5, 2.5,
                       depth + 1, cut=True)


def draw_razor_blade(sk: Sketch, rng: np.random.Generator) -> None:
    """A razor blade: a double-edged safety blade (a few stacked, in a paper or plastic wallet)
    or a utility-knife blade."""
    if rng.random() < 0.5:
        w, h = 43.0, 22.0
        stack = int(rng.integers(1, 6))
        depth = 0.1 * stack
        sk.box("steel", 0, 0, w, h, depth, r=1.0)
        sk.box("steel", 0, 0, w * 0.62, 3.0, 1.0, r=1.5, cut=True)  # the slot
        for x in (-w * 0.31, 0.0, w * 0.31):
            sk.ellipse("steel", x, 0, 3.2, 3.2, 1.0, cut=True)
        for s in (-1, 1):  # notches at the ends
            sk.box("steel", s * w / 2, 0, 5, 3.0, 1.0, cut=True)
        if rng.random() < 0.6:
            sk.box("organic" if rng.random() < 0.5 else "plastic", 0, 0, w + 6, h + 6, 0.8,
                   r=2.0)
    else:
        length, h = rng.uniform(58, 62), 19.0
        slope = rng.uniform(13, 17)
        pts = [(0, 0), (length, 0), (length - slope, h), (slope, h)]
        sk.polygon("steel", [(x - length / 2, y - h / 2) for x, y in pts], 0.6)
        for x in (-length * 0.12, length * 0.12):  # the two notches on the back
            sk.ellipse("steel", x, h / 2, 2.0, 2.0, 1.0, cut=True)


__all__ = ["draw_razor_blade", "draw_shuriken"]
