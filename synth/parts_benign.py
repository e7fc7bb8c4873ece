"""Sketches of benign look-alikes and bag clutter, in millimetres."""

from __future__ import annotations

import math

import numpy as np

from synth.parts_threat import draw_coil
from synth.sketch import Sketch


def draw_pen(sk: Sketch, rng: np.random.Generator) -> None:
    """Ballpoint pen: plastic barrel, ink refill, brass tip, clip, sometimes a spring."""
    length, r = rng.uniform(120, 150), rng.uniform(4.0, 5.5)
    body = "aluminium" if rng.random() < 0.25 else "plastic"
    sk.rod(body, (0, 0), (length, 0), r, r * 0.85, wall=0.8, caps=False)
    sk.rod(body, (length, 0), (length + 12, 0), r * 0.85, 1.2)
    sk.rod("plastic", (8, 0), (length + 6, 0), 1.2, caps=False)
    sk.rod("brass", (length + 6, 0), (length + 14, 0), 1.3, 0.4)
    sk.box("steel", 28, -r - 1, 40, 2.5, 1.0, r=1)
    if rng.random() < 0.6:
        draw_coil(sk, 10, 1.8, 0.25, 1.2, x0=length - 4)
    sk.rod("plastic", (-6, 0), (0, 0), r * 0.9)


def draw_key(sk: Sketch, rng: np.random.Generator) -> None:
    """Key: bow with a hole and a toothed blade, sometimes on a steel ring."""
    mat = "brass" if rng.random() < 0.6 else "steel"
    t, bow = rng.uniform(1.8, 2.6), rng.uniform(11, 16)
    sk.ellipse(mat, 0, 0, bow, bow * rng.uniform(0.8, 1.0), t)
    sk.ellipse(mat, -bow * 0.45, 0, 2.8, 2.8, t, cut=True)
    length, h = rng.uniform(30, 45), rng.uniform(7, 9)
    n = int(rng.integers(4, 8))
    xs = bow + np.linspace(0, length, 2 * n + 1)
    teeth = h / 2 + rng.uniform(0.5, 3.5, 2 * n + 1) * (np.arange(2 * n + 1) % 2)
    pts = [(bow - 2, -h / 2), (bow + length, -h / 2), (bow + length + 3, 0)]
    pts += [(x, y) for x, y in zip(xs[::-1], teeth[::-1], strict=True)] + [(bow - 2, h / 2)]
    sk.polygon(mat, pts, t)
    sk.box(mat, bow + length / 2, -1, length - 4, 0.8, 0.8, cut=True)
    if rng.random() < 0.5:
        phi = np.linspace(0, 2 * math.pi, 24)
        rr = rng.uniform(10, 14)
        sk.wire("steel", np.stack([-bow * 0.45 - rr + rr * np.cos(phi), rr * np.sin(phi)], 1), 0.9)


def draw_wrench(sk: Sketch, rng: np.random.Generator) -> None:
    """Combination wrench: flat steel handle, open jaw at one end, ring at the other."""
    length, w, t = rng.uniform(110, 200), rng.uniform(11, 18), rng.uniform(4, 7)
    jaw = w * rng.uniform(1.1, 1.5)
    sk.box("steel", length / 2, 0, length, w, t, r=w / 3)
    sk.ellipse("steel", 0, 0, jaw * 1.3, jaw * 1.3, t)
    sk.box("steel", -jaw * 0.7, 0, jaw * 1.8, jaw * 0.95, t, angle_deg=rng.uniform(10, 20),
           cut=True)
    sk.ellipse("steel", length, 0, jaw * 1.15, jaw * 1.15, t)
    sk.ellipse("steel", length, 0, jaw * 0.7, jaw * 0.7, t, cut=True)


def draw_screwdriver(sk: Sketch, rng: np.random.Generator) -> None:
    """Screwdriver: grooved plastic handle and a steel shaft with a flat or cross tip."""
    hl, hr = rng.uniform(80, 110), rng.uniform(11, 16)
    sk.rod("plastic", (0, 0), (hl, 0), hr, hr * 0.75)
    for y in np.linspace(-hr * 0.6, hr * 0.6, 5):
        sk.box("plastic", hl * 0.45, y, hl * 0.7, 1.5, hr * 0.5, cut=True)
    sl, sr = rng.uniform(70, 160), rng.uniform(2.5, 3.5)
    sk.rod("steel", (hl * 0.4, 0), (hl + sl, 0), sr, caps=False)
    sk.rod("steel", (hl + sl, 0), (hl + sl + 8, 0), sr, sr * 0.35)


def draw_cable(sk: Sketch, rng: np.random.Generator) -> None:
    """Charging cable: smooth random curve of plastic sheath with copper cores, plugs."""
    n = int(rng.integers(30, 60))
    turn = np.cumsum(rng.normal(0, 0.22, n))
    turn = np.convolve(turn, np.ones(5) / 5, mode="same")
    step = rng.uniform(6, 12)
    pts = np.cumsum(np.stack([np.cos(turn), np.sin(turn)], 1) * step, 0)
    r = rng.uniform(1.6, 2.8)
    sk.wire("plastic", pts, r)
    for off in (-0.35, 0.35):
        sk.wire("copper", pts + off * r, 0.35)
    for end, prev in ((pts[0], pts[1]), (pts[-1], pts[-2])):
        a = math.degrees(math.atan2(*(end - prev)[::-1]))
        sk.box("plastic", end[0], end[1], 22, 11, 8, angle_deg=a, r=2)
        if rng.random() < 0.7:
            d = (end - prev) / np.linalg.norm(end - prev)
            tip = end + d * 15
            sk.box("steel", tip[0], tip[1], 10, 7, 2.5, angle_deg=a, r=1)


def draw_battery(sk: Sketch, rng: np.random.Generator) -> None:
    """Cylindrical cell (AAA to C): steel can, dense core, brass collector pin."""
    r, length = rng.choice([(5.2, 44.5), (7.2, 50.5), (13.0, 50.0), (7.2, 50.5)])
    r, length = r * rng.uniform(0.97, 1.03), length * rng.uniform(0.97, 1.03)
    sk.rod("steel", (0, 0), (length, 0), r, wall=0.3, caps=False)
    sk.rod("aluminium", (1, 0), (length - 1.5, 0), r - 0.35, caps=False)
    sk.rod("steel", (1, 0), (length - 1.5, 0), r * 0.55, wall=r * 0.2, caps=False)
    sk.rod("brass", (2, 0), (length - 3, 0), 0.7, caps=False)
    sk.rod("steel", (length, 0), (length + 1.2, 0), r * 0.35, caps=False)


def _components(sk: Sketch, rng: np.random.Generator, x0, y0, x1, y1, n: int) -> None:
    for _ in range(n):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        kind = rng.random()
        if kind < 0.5:
            sk.box("copper", x, y, rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(0.5, 2))
        elif kind < 0.8:
            sk.box("steel", x, y, rng.uniform(3, 12), rng.uniform(3, 12), rng.uniform(0.2, 1.0))
        else:
            sk.ellipse("steel", x, y, 1.1, 1.1, rng.uniform(2, 4))


def draw_phone(sk: Sketch, rng: np.random.Generator) -> None:
    """Smartphone: aluminium frame, glass, pouch battery, board with components, magnets."""
    w, h = rng.uniform(140, 165), rng.uniform(68, 78)
    sk.box("aluminium", 0, 0, w, h, 1.2, r=9)
    sk.box("aluminium", 0, 0, w, h, 7.5, r=9)
    sk.box("aluminium", 0, 0, w - 3, h - 3, 7.5, r=8, cut=True)
    sk.box("glass", 0, 0, w - 1, h - 1, 1.6, r=9)
    bw = w * rng.uniform(0.45, 0.55)
    bx = -w / 2 + 8 + bw / 2
    sk.box("aluminium", bx, 0, bw, h * 0.8, 3.5, r=2)
    sk.box("organic", bx, 0, bw, h * 0.8, 4.0, r=2)
    sk.box("glass", bx + bw / 2 + 20, 0, 36, h * 0.7, 1.2, r=2)
    _components(sk, rng, bx + bw / 2 + 4, -h * 0.32, w / 2 - 6, h * 0.32, 14)
    sk.ellipse("steel", w / 2 - 12, -h / 2 + 14, 5, 5, 3)
    sk.ellipse("steel", -w / 2 + 5, 0, 3, 6, 3)
    for sx in (-1, 1):
        sk.ellipse("steel", sx * (w / 2 - 2.5), h * 0.2, 0.8, 0.8, 4)


def draw_laptop_charger(sk: Sketch, rng: np.random.Generator) -> None:
    """Power brick: plastic case, transformer with copper windings, heat sink, capacitors."""
    w, h = rng.uniform(90, 130), rng.uniform(45, 65)
    sk.box("plastic", 0, 0, w, h, 6, r=6)
    sk.box("plastic", 0, 0, w, h, 24, r=6)
    sk.box("plastic", 0, 0, w - 5, h - 5, 24, r=5, cut=True)
    sk.box("glass", 0, 0, w - 8, h - 8, 1.6, r=3)
    tx = rng.uniform(-w * 0.2, w * 0.2)
    sk.box("steel", tx, 0, 22, 20, 16, r=1)
    sk.box("copper", tx, 0, 14, 22, 10, r=2)
    sk.box("aluminium", -w * 0.35, 0, 8, h * 0.75, 20, r=1)
    for k in range(int(rng.integers(2, 4))):
        cx = w * 0.3 - 11 * k
        sk.ellipse("aluminium", cx, h * 0.25, 5, 5, 20)
        sk.ellipse("organic", cx, h * 0.25, 4.5, 4.5, 18)
    _components(sk, rng, -w * 0.4, -h * 0.4, w * 0.4, h * 0.4, 10)
    sk.wire("copper", [(w / 2, rng.uniform(-10, 10)), (w / 2 + 20, rng.uniform(-15, 15))], 1.0)


def draw_umbrella_rod(sk: Sketch, rng: np.random.Generator) -> None:
    """Folded umbrella: metal shaft tube, bundle of thin ribs, plastic J handle."""
    length, r = rng.uniform(230, 380), rng.uniform(3.5, 5.5)
    shaft = "aluminium" if rng.random() < 0.4 else "steel"
    sk.rod(shaft, (0, 0), (length, 0), r, wall=0.6, caps=False)
    ribs = int(rng.integers(6, 9))
    for k in range(ribs):
        y1 = (k - ribs / 2) * rng.uniform(1.5, 2.6)
        sk.wire("steel", [(length * 0.15, y1 * 1.6), (length * 0.55, y1 * 2.2),
                          (length * 0.97, 0)], 0.6)
    sk.box("steel", length * 0.6, 0, 14, 2 * r + 4, 2 * r + 4, r=2)
    sk.rod("plastic", (length, 0), (length + 12, 0), r * 1.3)
    if rng.random() < 0.6:
        phi = np.linspace(-math.pi / 2, math.pi / 2, 10)
        hr = rng.uniform(22, 32)
        hook = np.stack([-hr * np.cos(phi) * 0.9 - 40, hr + hr * np.sin(phi)], 1)
        sk.wire("plastic", np.vstack([[(0, 0)], [(-40, 0)], hook]), rng.uniform(9, 12))
    else:
        sk.rod("plastic", (-110, 0), (0, 0), rng.uniform(12, 16))


def draw_coins(sk: Sketch, rng: np.random.Generator) -> None:
    """A loose pile of coins of mixed sizes and alloys."""
    n = int(rng.integers(3, 9))
    for _ in range(n):
        r = rng.uniform(8, 13.5)
        mat = str(rng.choice(["brass", "steel", "copper"]))
        x, y = rng.normal(0, 14, 2)
        sk.ellipse(mat, x, y, r, r, rng.uniform(1.5, 2.3))
        if rng.random() < 0.25:  # bimetallic centre
            sk.ellipse("steel", x, y, r * 0.6, r * 0.6, 0.4)


def draw_scissors(sk: Sketch, rng: np.random.Generator) -> None:
    """Scissors: two crossing steel blades, pivot screw, plastic finger loops."""
    bl, open_deg = rng.uniform(60, 110), rng.uniform(0, 25)
    for s in (-1, 1):
        with sk.placed(0, 0, s * open_deg / 2):
            sk.polygon("steel", [(-12, -3 * s), (bl, 0.5 * s), (bl * 0.5, 5 * s), (-12, 4 * s)],
                       2.2)
            phi = np.linspace(0, 2 * math.pi, 20)
            lr = rng.uniform(11, 16)
            loop = np.stack([-22 - lr + lr * 1.2 * np.cos(phi),
                             s * (9 + lr * 0.7 * np.sin(phi))], 1)
            sk.wire("plastic", loop, rng.uniform(2.5, 3.5))
            sk.box("plastic", -17, s * 4, 14, 7, 6, r=2)
    sk.ellipse("steel", 0, 0, 2.8, 2.8, 6)


def draw_belt_buckle(sk: Sketch, rng: np.random.Generator) -> None:
    """Belt buckle: metal frame, prong, with a stub of leather belt."""
    w, h = rng.uniform(35, 55), rng.uniform(30, 45)
    mat = str(rng.choice(["steel", "brass", "aluminium"]))
    bar = rng.uniform(3.5, 6)
    sk.box(mat, 0, 0, w, h, rng.uniform(3, 5), r=rng.uniform(2, 12))
    sk.box(mat, 0, 0, w - 2 * bar, h - 2 * bar, 6, r=2, cut=True)
    sk.rod(mat, (-w / 2 + bar / 2, 0), (w / 2 + 2, 0), 1.6)
    if rng.random() < 0.7:
        sk.box("organic", w / 2 + 40, 0, 80, h - 2 * bar - 2, 4.0, r=1)


def draw_bottle(sk: Sketch, rng: np.random.Generator) -> None:
    """Glass bottle with a neck and a liquid fill, lying on its side."""
    length, r = rng.uniform(170, 250), rng.uniform(28, 40)
    neck = rng.uniform(11, 15)
    wall = rng.uniform(2.5, 4)
    sk.rod("glass", (0, 0), (length * 0.65, 0), r, wall=wall, caps=False)
    sk.rod("glass", (length * 0.65, 0), (length * 0.8, 0), r, neck, wall=wall, caps=False)
    sk.rod("glass", (length * 0.8, 0), (length, 0), neck, wall=wall, caps=False)
    sk.rod("glass", (-4, 0), (0, 0), r, caps=False)
    fill = rng.uniform(0.3, 0.95)
    sk.rod("organic", (0, 0), (length * 0.65 * fill, 0), r - wall, caps=False)
