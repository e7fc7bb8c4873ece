"""Sketches of dense everyday bag contents (mm): electronics, household goods and tools.

These are the large, busy objects that fill real parcels and carry the false alarms:
laptops and power banks (rows of cells, boards, hinges, screws), chargers with their
cables, cable bundles, bottles, shoes (steel shanks, eyelets), compact umbrellas, hammers,
pliers, cordless drills, tape measures, cans and aerosols.  They are drawn only by styled
scenes (``synth.styles``); the default generator keeps its own clutter (``parts_benign``).
"""

from __future__ import annotations

import math

import numpy as np

from synth.parts_benign import draw_laptop_charger
from synth.parts_threat import draw_coil
from synth.sketch import Sketch


def _screws(sk: Sketch, pts, r: float = 1.4, depth: float = 5.0) -> None:
    for x, y in pts:
        sk.ellipse("steel", x, y, r, r, depth)


def _cells(sk: Sketch, n: int, x0: float, y0: float, *, r: float = 9.2,
           length: float = 65.0) -> None:
    """A row of upright cylindrical lithium cells (steel can, rolled electrode, centre pin)."""
    for k in range(n):
        a, b = (x0 + k * 2 * r, y0 - length / 2), (x0 + k * 2 * r, y0 + length / 2)
        sk.rod("steel", a, b, r, wall=0.25, caps=False)
        sk.rod("aluminium", a, b, r - 0.4, caps=False)
        sk.rod("steel", a, b, 1.2, caps=False)


def _board(sk: Sketch, rng: np.random.Generator, x0, y0, x1, y1, n: int) -> None:
    """Printed circuit board with chips, capacitors and connectors."""
    sk.box("glass", (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 1.6, r=2)
    sk.box("copper", (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.15, r=2)
    for _ in range(n):
        x, y = rng.uniform(x0 + 4, x1 - 4), rng.uniform(y0 + 4, y1 - 4)
        roll = rng.random()
        if roll < 0.4:
            sk.box("plastic", x, y, rng.uniform(5, 16), rng.uniform(5, 16), 1.2)
            sk.box("copper", x, y, rng.uniform(3, 8), rng.uniform(3, 8), 0.3)
        elif roll < 0.7:
            sk.ellipse("aluminium", x, y, 3, 3, rng.uniform(5, 9))
        elif roll < 0.9:
            sk.box("steel", x, y, rng.uniform(6, 14), rng.uniform(4, 7), 0.5)
        else:
            sk.box("steel", x, y, 12, 12, 3, r=1)  # shield can


def draw_laptop(sk: Sketch, rng: np.random.Generator) -> None:
    """Laptop: chassis and lid, screen, keyboard plate, battery cells, board, fan, hinges."""
    w, h = rng.uniform(290, 360), rng.uniform(200, 250)
    shell = "aluminium" if rng.random() < 0.6 else "plastic"
    t = 1.4 if shell == "aluminium" else 2.5
    sk.box(shell, 0, 0, w, h, 2 * t, r=8)  # base and lid skins
    sk.box(shell, 0, 0, w, h, 14, r=8)
    sk.box(shell, 0, 0, w - 3, h - 3, 14, r=7, cut=True)  # side walls
    sk.box("glass", 0, -2, w - 14, h - 20, 1.2, r=3)  # display glass
    sk.box("organic", 0, -2, w - 14, h - 20, 1.5, r=3)  # panel layers
    sk.box("steel", 0, -h * 0.12, w * 0.86, h * 0.42, 0.4, r=3)  # keyboard plate
    for i in range(5):
        for j in range(12):
            sk.box("steel", -w * 0.4 + j * w * 0.8 / 11, -h * 0.3 + i * h * 0.09,
                   w * 0.05, h * 0.055, 0.5, r=1, cut=True)
    if rng.random() < 0.5:
        n = int(rng.integers(3, 7))
        _cells(sk, n, -n * 9.2 + 9.2, h * 0.28)
    else:
        for k in range(int(rng.integers(2, 4))):  # pouch cells
            x = -w * 0.3 + k * w * 0.22
            sk.box("aluminium", x, h * 0.3, w * 0.2, h * 0.28, 2.0, r=2)
            sk.box("organic", x, h * 0.3, w * 0.2, h * 0.28, 5.0, r=2)
    _board(sk, rng, -w * 0.45, -h * 0.42, w * 0.1, -h * 0.05, 24)
    fx = w * rng.uniform(0.15, 0.3)
    sk.ellipse("plastic", fx, -h * 0.25, 28, 28, 8)
    sk.ellipse("steel", fx, -h * 0.25, 8, 8, 6)
    sk.wire("copper", [(fx - 30, -h * 0.25), (-w * 0.1, -h * 0.2), (-w * 0.25, -h * 0.22)], 3.0)
    for sx in (-1, 1):
        sk.box("steel", sx * w * 0.33, -h / 2 + 6, 30, 9, 8, r=2)  # hinges
        sk.ellipse("steel", sx * w * 0.42, h * 0.05, 6, 9, 4)  # speaker magnets
    _screws(sk, [(sx * (w / 2 - 8), sy * (h / 2 - 8)) for sx in (-1, 0, 1) for sy in (-1, 1)])


def draw_power_bank(sk: Sketch, rng: np.random.Generator) -> None:
    """Power bank: shell around two to four cells and a small board."""
    n = int(rng.integers(2, 5))
    w, h = n * 18.4 + 8, rng.uniform(85, 105)
    sk.box("aluminium" if rng.random() < 0.5 else "plastic", 0, 0, w, h, 24, r=5)
    sk.box("plastic", 0, 0, w - 3, h - 3, 24, r=4, cut=True)
    _cells(sk, n, -w / 2 + 13.2, -8, r=9.2, length=65)
    _board(sk, rng, -w / 2 + 3, h / 2 - 20, w / 2 - 3, h / 2 - 3, 6)


def _loop_cable(sk: Sketch, rng: np.random.Generator, cx: float, cy: float, rx: float,
                ry: float, turns: int, r: float) -> np.ndarray:
    """A loosely coiled cable (plastic sheath, copper cores); returns its points."""
    phi = np.linspace(0, 2 * math.pi * turns, 24 * turns)
    jit = 1 + 0.12 * np.sin(phi * rng.uniform(0.2, 0.6) + rng.uniform(0, 6))
    drift = rng.normal(0, 4, 2)
    pts = np.stack([cx + rx * jit * np.cos(phi) + drift[0] * phi / (2 * math.pi),
                    cy + ry * jit * np.sin(phi) + drift[1] * phi / (2 * math.pi)], 1)
    sk.wire("plastic", pts, r)
    sk.wire("copper", pts, r * 0.35)
    return pts


def draw_cable_bundle(sk: Sketch, rng: np.random.Generator) -> None:
    """Cable bundle: a few coiled cables with plugs, tied or loose."""
    for _ in range(int(rng.integers(2, 5))):
        rx = rng.uniform(30, 70)
        pts = _loop_cable(sk, rng, rng.normal(0, 15), rng.normal(0, 15), rx,
                          rx * rng.uniform(0.5, 1.0), int(rng.integers(2, 6)),
                          rng.uniform(1.5, 3.5))
        for end in (pts[0], pts[-1]):
            a = rng.uniform(0, 180)
            sk.box("plastic", end[0], end[1], 24, 12, 9, angle_deg=a, r=2)
            if rng.random() < 0.7:
                sk.box("steel", end[0], end[1], 12, 7, 3, angle_deg=a, r=1)
    if rng.random() < 0.5:
        sk.box("plastic", 0, 0, 8, 30, 4, angle_deg=rng.uniform(0, 180), r=2)  # tie


def draw_charger_bundle(sk: Sketch, rng: np.random.Generator) -> None:
    """Laptop power brick with its cable wound round it."""
    draw_laptop_charger(sk, rng)
    _loop_cable(sk, rng, 0, 0, rng.uniform(55, 75), rng.uniform(30, 45),
                int(rng.integers(2, 5)), rng.uniform(2.2, 3.2))


def draw_plastic_bottle(sk: Sketch, rng: np.random.Generator) -> None:
    """PET bottle lying down, part filled with a drink, plastic cap."""
    length, r = rng.uniform(190, 300), rng.uniform(30, 45)
    sk.rod("plastic", (0, 0), (length * 0.75, 0), r, wall=0.4, caps=False)
    sk.rod("plastic", (length * 0.75, 0), (length * 0.92, 0), r, 13, wall=0.4, caps=False)
    sk.rod("plastic", (length * 0.92, 0), (length, 0), 14, caps=False)
    fill = rng.uniform(0.2, 1.0)
    sk.rod("organic", (1, 0), (length * 0.75 * fill, 0), r - 0.5, caps=False)


def _footprint(length: float, width: float) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    x = length / 2 * np.cos(t)
    y = width / 2 * np.sin(t) * (1 - 0.28 * (np.cos(t) < 0) * -np.cos(t))  # narrower heel
    return np.stack([x, y], 1)


def draw_shoes(sk: Sketch, rng: np.random.Generator) -> None:
    """A pair of shoes seen from above: rubber soles, heels, steel shanks, eyelets."""
    length, width = rng.uniform(250, 310), rng.uniform(85, 110)
    gap = width * rng.uniform(1.05, 1.4)
    for side in (-1, 1):
        with sk.placed(rng.normal(0, 20), side * gap / 2, 180 if side > 0 else 0):
            foot = _footprint(length, width)
            sk.polygon("organic", foot, rng.uniform(20, 30))
            sk.polygon("organic", foot * 0.86, rng.uniform(12, 20), cut=True)
            sk.polygon("organic", foot * 0.86, rng.uniform(4, 8))  # insole + upper
            sk.box("organic", -length * 0.36, 0, length * 0.22, width * 0.6, 25, r=12)  # heel
            if rng.random() < 0.6:
                sk.box("steel", -length * 0.15, 0, length * 0.35, 10, 1.4, r=2)  # shank
            for k in range(int(rng.integers(0, 7))):
                for s in (-1, 1):
                    sk.ellipse("steel", length * (0.05 + 0.045 * k), s * width * 0.18, 2.2,
                               2.2, 0.6)


def draw_umbrella_compact(sk: Sketch, rng: np.random.Generator) -> None:
    """Folding umbrella: nested steel shaft tubes, folded rib bundle, handle, fabric."""
    length = rng.uniform(220, 290)
    for k, r in enumerate((5.5, 4.6, 3.8)):
        sk.rod("steel", (k * 12, 0), (length - k * 8, 0), r, wall=0.5, caps=False)
    for k in range(int(rng.integers(6, 9))):
        y = (k - 3.5) * rng.uniform(1.2, 2.0)
        pts = [(10, y * 1.5), (length * 0.4, y * 3.0), (length * 0.7, y * 2.2),
               (length - 10, y * 0.6)]
        sk.wire("steel", pts, 0.7)
        sk.wire("steel", [(length * 0.38, y * 3), (length * 0.62, y * 2.5)], 0.5)
    sk.box("organic", length * 0.5, 0, length * 0.9, 45, 3, r=15)  # folded canopy
    sk.rod("plastic", (-90, 0), (0, 0), rng.uniform(12, 15))
    sk.ellipse("steel", length - 3, 0, 4, 4, 8)


def draw_hammer(sk: Sketch, rng: np.random.Generator) -> None:
    """Claw hammer: forged steel head, wooden or fibreglass handle."""
    hl = rng.uniform(250, 340)
    handle = "organic" if rng.random() < 0.5 else "plastic"
    sk.rod(handle, (0, 0), (hl, 0), rng.uniform(12, 16), rng.uniform(14, 18))
    head = rng.uniform(100, 130)
    sk.box("steel", hl - 8, head * 0.15, 26, head * 0.45, 26, r=4)
    sk.rod("steel", (hl - 8, 0), (hl - 8, -head * 0.45), 13, caps=False)
    sk.ellipse("steel", hl - 8, -head * 0.47, 14, 4, 26)
    claw = [(hl - 20, head * 0.35), (hl + 4, head * 0.35), (hl + 16, head * 0.6),
            (hl - 2, head * 0.55)]
    sk.polygon("steel", claw, 14)
    sk.box("steel", hl - 8, 0, 8, 30, 26, r=2)  # wedge


def draw_pliers(sk: Sketch, rng: np.random.Generator) -> None:
    """Pliers: two forged steel arms crossing at a rivet, plastic grips."""
    length, open_deg = rng.uniform(150, 220), rng.uniform(0, 18)
    jaw = length * 0.3
    for s in (-1, 1):
        with sk.placed(0, 0, s * open_deg / 2):
            sk.polygon("steel", [(0, -7 * s), (jaw, -2 * s), (jaw, 2 * s), (0, 7 * s)], 9)
            sk.polygon("steel", [(0, -6 * s), (-(length - jaw), s * 14), (-(length - jaw),
                                 s * 20), (0, 6 * s)], 7)
            sk.polygon("plastic", [(-20, s * 4), (-(length - jaw) - 6, s * 11),
                                   (-(length - jaw) - 6, s * 24), (-20, s * 12)], 8)
    sk.ellipse("steel", 0, 0, 6, 6, 14)


def draw_drill(sk: Sketch, rng: np.random.Generator) -> None:
    """Cordless drill: motor (magnets, copper windings), gearbox, chuck, battery pack."""
    body = rng.uniform(150, 190)
    sk.box("plastic", 0, 0, body, 62, 55, r=18)
    sk.box("plastic", 0, 0, body - 6, 56, 49, r=15, cut=True)
    sk.rod("steel", (-body * 0.3, 0), (0, 0), 18, wall=1.2, caps=False)  # motor can
    sk.rod("copper", (-body * 0.27, 0), (-body * 0.05, 0), 11, caps=False)
    sk.rod("steel", (-body * 0.3, 0), (body * 0.3, 0), 2.0, caps=False)  # shaft
    sk.rod("steel", (0, 0), (body * 0.35, 0), 21, wall=2.5, caps=False)  # gearbox
    sk.rod("steel", (body / 2, 0), (body / 2 + 45, 0), 18, 14, caps=False)  # chuck
    if rng.random() < 0.7:
        sk.rod("steel", (body / 2 + 45, 0), (body / 2 + 45 + rng.uniform(40, 90), 0), 3.5)
    with sk.placed(-body * 0.05, 30, rng.uniform(5, 15)):
        sk.box("plastic", 0, 60, 45, 120, 40, r=12)  # grip
        sk.box("plastic", 0, 60, 39, 114, 34, r=10, cut=True)
        sk.box("copper", 0, 20, 10, 14, 6)  # switch
        sk.box("plastic", 0, 135, 85, 50, 75, r=6)  # battery pack
        for k in range(int(rng.integers(2, 6))):
            sk.rod("steel", (-30 + 15 * k, 118), (-30 + 15 * k, 152), 9, wall=0.25,
                   caps=False)
            sk.rod("aluminium", (-30 + 15 * k, 118), (-30 + 15 * k, 152), 8.6, caps=False)


def draw_tape_measure(sk: Sketch, rng: np.random.Generator) -> None:
    """Tape measure: plastic case round a coiled steel tape, spring and clip."""
    r = rng.uniform(28, 38)
    sk.box("plastic", 0, 0, 2 * r + 12, 2 * r + 6, 38, r=10)
    sk.box("plastic", 0, 0, 2 * r + 6, 2 * r, 32, r=8, cut=True)
    turns = int(rng.integers(18, 40))
    for k in range(turns):
        rr = r * 0.95 - k * r * 0.55 / turns
        sk.ellipse("steel", 0, 0, rr, rr, 0.12 * 25)
        sk.ellipse("steel", 0, 0, rr - 0.35, rr - 0.35, 0.12 * 25, cut=True)
    sk.ellipse("steel", 0, 0, r * 0.35, r * 0.35, 12)
    sk.ellipse("steel", 0, 0, r * 0.25, r * 0.25, 12, cut=True)
    sk.box("steel", -r - 4, 0, 3, 30, 14, r=1)  # belt clip
    sk.box("brass", r + 8, r * 0.8, 4, 22, 20, r=1)  # hook


def draw_can(sk: Sketch, rng: np.random.Generator) -> None:
    """Food or drink can (steel or aluminium, filled) or an aerosol, lying down."""
    if rng.random() < 0.5:
        length, r = rng.uniform(150, 210), rng.uniform(22, 33)
        sk.rod("aluminium", (0, 0), (length, 0), r, wall=0.45, caps=False)
        sk.ellipse("aluminium", 0, 0, 3, r, 2 * r)  # domed base
        sk.rod("organic", (2, 0), (length * rng.uniform(0.5, 0.95), 0), r - 1, caps=False)
        sk.rod("plastic", (length, 0), (length + 25, 0), r * 0.8, wall=1.2, caps=False)
        sk.rod("steel", (length - 4, 0), (length + 6, 0), 4, caps=False)  # valve
        return
    mat = "steel" if rng.random() < 0.6 else "aluminium"
    length, r = rng.uniform(95, 125), rng.uniform(32, 45)
    sk.rod(mat, (0, 0), (length, 0), r, wall=0.3, caps=False)
    for x in (0, length):
        sk.ellipse(mat, x, 0, 1.5, r, 2 * r * 0.6)
    sk.rod("organic", (1, 0), (length - 1, 0), r - 0.5, caps=False)


def draw_headphones(sk: Sketch, rng: np.random.Generator) -> None:
    """Over-ear headphones: headband arc, cups with magnets and voice coils."""
    span = rng.uniform(140, 180)
    phi = np.linspace(math.pi * 1.05, math.pi * 1.95, 16)
    band = np.stack([span / 2 * np.cos(phi), span * 0.55 * np.sin(phi) + span * 0.35], 1)
    sk.wire("plastic", band, rng.uniform(5, 8))
    sk.wire("steel", band, 1.2)
    for x in (band[0, 0], band[-1, 0]):
        y = band[0, 1] + 35
        sk.ellipse("plastic", x, y, 34, 42, 28)
        sk.ellipse("plastic", x, y, 30, 38, 22, cut=True)
        sk.ellipse("steel", x, y, 13, 13, 8)
        sk.ellipse("copper", x, y, 9, 9, 2.5)
        sk.ellipse("organic", x, y, 32, 40, 12)  # cushion


def draw_book(sk: Sketch, rng: np.random.Generator) -> None:
    """Book or notebook: a paper block, sometimes with a wire spiral."""
    w, h = rng.uniform(140, 240), rng.uniform(200, 300)
    sk.box("organic", 0, 0, w, h, rng.uniform(15, 45) * 0.8, r=2)
    if rng.random() < 0.3:
        for k in range(int(h / 8)):
            sk.ellipse("steel", -w / 2 + 3, -h / 2 + 6 + 8 * k, 5, 2.5, 1.2)
            sk.ellipse("steel", -w / 2 + 3, -h / 2 + 6 + 8 * k, 4.2, 1.7, 1.2, cut=True)


def draw_hair_dryer(sk: Sketch, rng: np.random.Generator) -> None:
    """Hair dryer: plastic barrel, motor and fan, nichrome heating coil, handle with cable."""
    length = rng.uniform(170, 230)
    sk.rod("plastic", (0, 0), (length, 0), 38, wall=2.5, caps=False)
    sk.ellipse("plastic", 20, 0, 10, 36, 60)  # fan
    sk.rod("steel", (10, 0), (50, 0), 14, wall=1, caps=False)
    sk.rod("copper", (14, 0), (44, 0), 9, caps=False)
    draw_coil(sk, length * 0.45, 20, 0.4, 3.0, x0=length * 0.45, y0=0)
    with sk.placed(length * 0.2, 30, rng.uniform(-15, 15)):
        sk.box("plastic", 0, 55, 36, 110, 32, r=12)
        sk.box("plastic", 0, 55, 31, 104, 27, r=10, cut=True)
        sk.wire("copper", [(0, 20), (0, 110)], 0.8)
        sk.wire("plastic", [(0, 110), (rng.uniform(-40, 40), 170), (rng.uniform(-60, 60), 230)],
                3.0)


__all__ = [
    "draw_book", "draw_cable_bundle", "draw_can", "draw_charger_bundle", "draw_drill",
    "draw_hair_dryer", "draw_hammer", "draw_headphones", "draw_laptop", "draw_pliers",
    "draw_plastic_bottle", "draw_power_bank", "draw_shoes", "draw_tape_measure",
    "draw_umbrella_compact",
]
