"""Sketches of whole firearms composed from the component sketches (side views)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from synth.parts_threat import (
    draw_barrel,
    draw_coil,
    draw_cylinder,
    draw_frame,
    draw_magazine,
    draw_slide,
)
from synth.sketch import Sketch


def draw_pistol(sk: Sketch, rng: np.random.Generator) -> None:
    """Semi-automatic pistol: frame, slide, barrel inside the slide, recoil spring, magazine."""
    ls, hs = rng.uniform(160, 205), rng.uniform(26, 31)
    grip = draw_frame(sk, rng, length=ls * rng.uniform(0.9, 0.97), y0=hs - 3)
    draw_slide(sk, rng, length=ls, height=hs)
    bl = ls * rng.uniform(0.78, 0.88)
    draw_barrel(sk, rng, length=bl, radius=rng.uniform(5.5, 7.0),
                x0=ls - bl - rng.uniform(0, 3), y0=hs * 0.45, hood=False)
    ry = hs + rng.uniform(3, 6)
    rx0 = ls - bl + 22
    sk.rod(str(rng.choice(["steel", "plastic"])), (rx0, ry), (ls - 6, ry), rng.uniform(1.6, 2.2))
    draw_coil(sk, ls - 8 - rx0, rng.uniform(3.5, 4.5), rng.uniform(0.55, 0.8),
              rng.uniform(3.5, 5.5), x0=rx0, y0=ry)
    draw_magazine(sk, rng, height=grip.length * rng.uniform(0.95, 1.05), width=grip.width * 0.72,
                  angle_deg=grip.angle_deg, x0=grip.x + 1, y0=grip.y - 2)
    if rng.random() < 0.4:  # external hammer
        with sk.placed(rng.uniform(-2, 3), hs - 2, rng.uniform(-40, 0)):
            sk.polygon("steel", [(-3, 3), (4, 3), (2, -10), (-5, -13), (-6, -8)], 7)


def draw_revolver(sk: Sketch, rng: np.random.Generator) -> None:
    """Revolver: frame around a side-view cylinder, barrel with underlug, hammer, grip."""
    rad = rng.uniform(16, 20)
    cx0 = rng.uniform(18, 26)
    clen = draw_cylinder(sk, rng, end_on=False, radius=rad, x0=cx0, y0=0.0)
    front = cx0 + clen
    sk.box("steel", cx0 + clen / 2, -rad - 4, clen + 20, 7, 12, r=2)  # top strap
    sk.box("steel", cx0 + clen / 2, rad + 5, clen + 22, 9, 14, r=2)  # bottom frame
    sk.box("steel", cx0 - 5, 1, 10, 2 * rad + 12, 24, r=3)  # recoil shield
    sk.box("steel", front + 6, -rad * 0.45, 12, rad * 1.2, 16, r=2)  # barrel lug
    blen, br = rng.uniform(50, 160), rng.uniform(6.5, 9.0)
    by = -rad * 0.45
    draw_barrel(sk, rng, length=blen, radius=br, x0=front + 1, y0=by, hood=False)
    if rng.random() < 0.5:
        sk.box("steel", front + blen * 0.5, by + br + 5, blen * 0.95, 10, 12, r=3)  # underlug
    else:
        sk.rod("steel", (front + 2, by + br + 4), (front + blen * 0.6, by + br + 4), 3.0)
    sk.box("steel", front + blen - 5, by - br - 3, 6, 6, 4, r=1)  # front sight
    theta = rng.uniform(15, 32)
    gl, gw = rng.uniform(80, 105), rng.uniform(28, 36)
    with sk.placed(cx0 - 10, rad + 2, theta):
        grip_mat = "organic" if rng.random() < 0.5 else "plastic"
        sk.box(grip_mat, -2, gl / 2, gw, gl, rng.uniform(28, 34), r=9)
        sk.box("steel", -2, gl / 2 - 4, gw * 0.45, gl - 10, 10, r=3)
        if rng.random() < 0.5:
            draw_coil(sk, gl * 0.5, 3.5, 0.7, 3.5, x0=-gl * 0.35 + 10, y0=0)
    with sk.placed(cx0 - 6, -rad * 0.4, rng.uniform(-35, 5)):
        sk.polygon("steel", [(-3, 4), (4, 4), (3, -12), (-6, -17), (-8, -12)], 8)
    ga, gb = rng.uniform(16, 22), rng.uniform(20, 26)
    gx = cx0 + ga - 2
    phi = np.linspace(math.pi, 0.0, 14)
    sk.wire("steel", np.stack([gx + ga * np.cos(phi), rad + 8 + gb * np.sin(phi)], 1),
            rng.uniform(2.2, 3.0))
    ts = np.linspace(0.0, 1.0, 6)
    sk.wire("steel", np.stack([gx - ga * 0.4 + 6 * ts ** 2, rad + 9 + gb * 0.75 * ts], 1), 2.2)
    for k in range(int(rng.integers(2, 4))):
        sk.ellipse("steel", cx0 + 8 + 14 * k, rad + 5, 1.6, 1.6, 16)


_REPLICA_MAP = {"steel": "plastic", "aluminium": "plastic", "brass": "plastic", "lead": "plastic"}


def draw_replica(sk: Sketch, rng: np.random.Generator) -> None:
    """Replica/toy pistol: the pistol shape in plastic with a few steel springs and screws."""
    tmp = Sketch()
    draw_pistol(tmp, rng)
    for op in tmp.ops:
        keep = op.prim == "wire" and rng.random() < 0.5
        mat = op.material if keep else _REPLICA_MAP.get(op.material, op.material)
        sk.ops.append(replace(op, material=mat))
    x0, y0, x1, y1 = tmp.extent()
    for _ in range(int(rng.integers(2, 6))):
        sk.ellipse("steel", rng.uniform(x0 + 10, x1 - 10), rng.uniform(y0 + 5, y0 + 35),
                   1.3, 1.3, 8)
