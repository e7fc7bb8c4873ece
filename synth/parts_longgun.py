"""Sketches of whole long guns (side views, mm): a gas-operated rifle and a pump shotgun.

Composed from the component sketches where they fit (barrel, coil spring, magazine,
cartridges) so a long gun shares its parts' X-ray signatures.  Lengths follow real guns:
carbines and rifles 650-1000 mm, shotguns 700-1150 mm (folded or short-barrelled
variants shorter), which is what makes them hard to hide in an ordinary bag.
"""

from __future__ import annotations

import numpy as np

from synth.parts_threat import draw_barrel, draw_coil, draw_magazine
from synth.sketch import Sketch


def _receiver(sk: Sketch, mat: str, x0: float, x1: float, y0: float, y1: float, depth: float,
              wall: float) -> None:
    """A hollow receiver box: outer slab, the inside cut to the side walls' thickness."""
    sk.box(mat, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, depth, r=4)
    sk.box(mat, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0 - 2 * wall, y1 - y0 - 2 * wall,
           depth - 2 * wall, r=2, cut=True)


def _trigger(sk: Sketch, rng: np.random.Generator, x: float, y: float) -> None:
    """Trigger, hammer and their pins, with a wire trigger guard below."""
    sk.polygon("steel", [(x - 2, y), (x + 3, y), (x + 1, y + 16), (x - 4, y + 14)], 6)
    sk.polygon("steel", [(x - 30, y - 6), (x - 18, y - 6), (x - 16, y + 6), (x - 28, y + 8)], 7)
    for px in (x - 24, x - 2):
        sk.ellipse("steel", px, y - 1, 1.6, 1.6, 22)
    guard = np.array([(x - 18, y), (x - 16, y + 24), (x + 10, y + 25), (x + 22, y + 6)])
    sk.wire("steel" if rng.random() < 0.5 else "aluminium", guard, 2.2)


def draw_rifle(sk: Sketch, rng: np.random.Generator) -> None:
    """Gas-operated rifle or carbine: receivers, bolt carrier, barrel, handguard, buffer, stock."""
    carbine = rng.random() < 0.5
    rec = rng.uniform(170, 200)
    _receiver(sk, "aluminium", 0, rec, -24, 6, 30, 3.5)  # upper
    sk.polygon("aluminium", [(25, 6), (rec - 10, 6), (rec - 25, 38), (60, 40), (30, 28)], 24)
    sk.box("steel", rec * 0.42, -10, rec * 0.55, 17, 17, r=3)  # bolt carrier
    sk.rod("steel", (rec * 0.7, -10), (rec * 0.95, -10), 5.5)  # bolt head
    blen = rng.uniform(260, 370) if carbine else rng.uniform(400, 510)
    draw_barrel(sk, rng, length=blen, radius=rng.uniform(8, 10.5), x0=rec - 30, y0=-9,
                hood=False)
    hg = blen * rng.uniform(0.45, 0.8)
    sk.rod("aluminium" if rng.random() < 0.6 else "plastic", (rec, -9), (rec + hg, -9),
           rng.uniform(18, 23), wall=rng.uniform(1.8, 3.0), caps=False)
    for k in range(int(rng.integers(0, 9))):  # vent holes of a free-float handguard
        sk.box("aluminium", rec + 20 + k * hg / 9, -9, 9, 22, 6, r=3, cut=True)
    sk.rod("steel", (rec - 10, -20), (rec + hg + 10, -20), 2.4, wall=0.6, caps=False)  # gas tube
    end = rec - 30 + blen
    sk.rod("steel", (end - 2, -9), (end + rng.uniform(40, 60), -9), 11, wall=4, caps=False)
    _trigger(sk, rng, 95, 12)
    with sk.placed(60, 36, rng.uniform(15, 25)):
        sk.box("plastic", 0, 28, 30, 64, 28, r=8)  # pistol grip
    draw_magazine(sk, rng, height=rng.uniform(150, 210), width=rng.uniform(55, 66),
                  angle_deg=rng.uniform(-18, -8), x0=rec * 0.72, y0=34)
    tube = rng.uniform(170, 230)
    sk.rod("aluminium", (0, -9), (-tube, -9), 15, wall=2.2, caps=False)  # buffer tube
    sk.rod("steel", (-4, -9), (-70, -9), 12, caps=False)  # buffer
    draw_coil(sk, tube - 80, 9.5, 1.0, 5.0, x0=-tube + 6, y0=-9)
    if rng.random() < 0.75:  # stock; without one the carbine is a "pistol" build
        sx = -tube + rng.uniform(0, 60)
        sk.polygon("plastic", [(sx + 80, -25), (sx - 20, -30), (sx - 25, 40), (sx + 5, 40),
                               (sx + 85, 8)], 42)
        sk.polygon("plastic", [(sx + 70, -18), (sx - 12, -22), (sx - 15, 30), (sx + 70, 2)],
                   34, cut=True)
        sk.box("organic", sx - 22, 5, 8, 70, 42, r=3)  # rubber butt pad
    if rng.random() < 0.45:  # optic on the top rail
        ol = rng.uniform(120, 320)
        sk.rod("aluminium", (20, -50), (20 + ol, -50), rng.uniform(13, 20), wall=2.0,
               caps=False)
        for x in (24, 16 + ol):
            sk.ellipse("glass", x, -50, 4, 16, 30)
        for x in (40, ol - 10):
            sk.box("steel", x, -33, 14, 16, 24, r=2)  # rings


def _shell(sk: Sketch, rng: np.random.Generator, x: float, y: float, r: float) -> None:
    """Shotgun shell lying along the axis: brass head, plastic hull, lead shot."""
    length = rng.uniform(62, 72)
    sk.rod("brass", (x, y), (x + 12, y), r, caps=False)
    sk.rod("plastic", (x + 12, y), (x + length, y), r * 0.96, wall=0.8, caps=False)
    sk.rod("lead", (x + 22, y), (x + length - 8, y), r * 0.7, caps=False)


def draw_shotgun(sk: Sketch, rng: np.random.Generator) -> None:
    """Pump shotgun: receiver, thin-walled barrel, magazine tube with spring and shells, stock."""
    rec = rng.uniform(170, 210)
    mat = "aluminium" if rng.random() < 0.5 else "steel"
    _receiver(sk, mat, 0, rec, -28, 22, 34, 3.0 if mat == "steel" else 4.5)
    sk.box("steel", rec * 0.55, -8, rec * 0.55, 22, 20, r=3)  # bolt
    short = rng.random() < 0.3
    blen = rng.uniform(300, 360) if short else rng.uniform(460, 710)
    r = rng.uniform(10.5, 12.0)
    sk.rod("steel", (rec - 10, -10), (rec + blen, -10), r, wall=rng.uniform(1.3, 1.9),
           caps=False)
    sk.rod("steel", (rec - 10, -10), (rec + 60, -10), r * 1.05, wall=2.5, caps=False)  # chamber
    mlen = min(blen * rng.uniform(0.6, 0.9), blen - 10)
    sk.rod("steel", (rec - 10, 14), (rec + mlen, 14), 11, wall=0.7, caps=False)  # magazine tube
    shells = int(rng.integers(0, max(1, int(mlen / 70)) + 1))
    for k in range(shells):
        _shell(sk, rng, rec + k * 72, 14, 9.6)
    x0 = rec + shells * 72
    if mlen - (x0 - rec) > 30:
        draw_coil(sk, mlen - (x0 - rec) - 10, 8.5, 0.9, 9.0, x0=x0, y0=14)
    fe = rng.uniform(150, 230)
    fx = rec + rng.uniform(10, 60)
    sk.rod("organic" if rng.random() < 0.5 else "plastic", (fx, 14), (fx + fe, 14), 20,
           wall=7, caps=False)  # pump fore-end
    for y in (4, 24):
        sk.rod("steel", (rec - 20, y), (fx + 20, y), 2.0, caps=False)  # action bars
    _trigger(sk, rng, 70, 24)
    wood = "organic" if rng.random() < 0.6 else "plastic"
    if short or rng.random() < 0.2:  # pistol-grip only
        with sk.placed(-5, 15, rng.uniform(20, 30)):
            sk.box(wood, 0, 40, 34, 95, 30, r=9)
            sk.rod("steel", (0, -5), (0, 60), 3.0)  # grip bolt
    else:
        sl = rng.uniform(330, 380)
        drop = rng.uniform(20, 45)
        sk.polygon(wood, [(0, -26), (0, 22), (-60, 30), (-sl, 40 + drop), (-sl, -18 + drop),
                          (-sl * 0.45, -12)], 40)
        sk.rod("steel", (5, 0), (-sl * 0.6, 0.1 * drop), 3.5)  # stock bolt
        sk.box("organic", -sl - 5, 10 + drop, 10, 60, 42, r=3)
    for k in range(int(rng.integers(0, 5))):  # spare shells in a side saddle
        with sk.placed(20 + 22 * k, -30, 90):
            _shell(sk, rng, -50, 0, 9.6)


__all__ = ["draw_rifle", "draw_shotgun"]
