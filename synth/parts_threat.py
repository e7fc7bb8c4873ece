"""Sketches of firearm components (side views unless noted), in millimetres.

Part coordinates: x along the part (muzzle or front towards +x), y downwards.
Each ``draw_*`` function records primitives into a Sketch and samples its own
per-instance dimensions from ``rng`` unless they are passed in (composites pass
them to make the pieces fit together).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synth.sketch import Sketch


def draw_barrel(sk: Sketch, rng: np.random.Generator, *, length: float | None = None,
                radius: float | None = None, x0: float = 0.0, y0: float = 0.0,
                hood: bool = True) -> None:
    """Barrel tube: two steel walls and a hollow bore, chamber, lug and optional crown."""
    rifle = length is None and rng.random() < 0.2
    length = length or (rng.uniform(300, 460) if rifle else rng.uniform(90, 150))
    radius = radius or rng.uniform(5.5, 8.0) * (1.25 if rifle else 1.0)
    bore = radius * rng.uniform(0.45, 0.62)
    ch_len = rng.uniform(14, 24) * (1.8 if rifle else 1.0)
    r_ch = radius * rng.uniform(1.15, 1.4)
    taper = rng.uniform(0.75, 0.9) if rifle else 1.0
    wall = radius - bore
    sk.rod("steel", (x0 + ch_len, y0), (x0 + length, y0), radius, radius * taper,
           wall=wall * (0.9 + 0.1 * taper), caps=False)
    sk.rod("steel", (x0, y0), (x0 + ch_len, y0), r_ch, wall=r_ch - bore * 1.12, caps=False)
    if hood and not rifle:
        sk.box("steel", x0 + ch_len / 2, y0 - r_ch * 0.75, ch_len, r_ch * 0.8, r_ch * 1.8, r=1)
        if rng.random() < 0.75:
            lug = [(x0 + ch_len * 0.25, y0 + r_ch * 0.6), (x0 + ch_len * 1.3, y0 + r_ch * 0.6),
                   (x0 + ch_len * 0.95, y0 + r_ch * 2.2), (x0 + ch_len * 0.3, y0 + r_ch * 2.3)]
            sk.polygon("steel", lug, r_ch * 1.4)
            sk.ellipse("steel", x0 + ch_len * 0.55, y0 + r_ch * 1.6, 1.6, 1.6, r_ch * 1.4,
                       cut=True)
    end = x0 + length
    style = rng.random()
    if style < 0.45:  # recessed crown: the bore is countersunk at the muzzle
        sk.rod("steel", (end - 2.5, y0), (end, y0), bore * 1.35, wall=bore * 0.35,
               caps=False, cut=True)
    elif style < 0.7:  # threaded muzzle
        for k in range(int(rng.integers(6, 12))):
            x = end - 1.0 - k * 1.1
            sk.rod("steel", (x - 0.3, y0), (x + 0.3, y0), radius * taper, wall=0.6,
                   caps=False, cut=True)


def draw_slide(sk: Sketch, rng: np.random.Generator, *, length: float | None = None,
               height: float | None = None, x0: float = 0.0, y0: float = 0.0,
               material: str = "steel") -> float:
    """Pistol slide: hollow box, solid breech, rear serrations, ejection port, sights."""
    length = length or rng.uniform(150, 205)
    height = height or rng.uniform(24, 31)
    width, wall, top = rng.uniform(20, 27), rng.uniform(3.0, 4.5), rng.uniform(3.0, 5.0)
    inner = width - 2 * wall
    m = material
    sk.box(m, x0 + length / 2, y0 + height / 2, length, height, 2 * wall, r=2.5)
    sk.box(m, x0 + length / 2, y0 + top / 2, length - 2, top, inner, r=1.5)
    breech = rng.uniform(18, 26)
    sk.box(m, x0 + breech / 2, y0 + height / 2, breech, height - 1, inner, r=2)
    sk.rod(m, (x0 + 1, y0 + height * 0.45), (x0 + breech - 1, y0 + height * 0.45),
           rng.uniform(1.5, 2.2), cut=True)
    nose = rng.uniform(10, 16)
    sk.box(m, x0 + length - nose / 2, y0 + height * 0.55, nose, height * 0.9, inner, r=3)
    sk.rod(m, (x0 + length - nose - 1, y0 + height * 0.45), (x0 + length + 1, y0 + height * 0.45),
           rng.uniform(5.5, 7.0), caps=False, cut=True)
    n, pitch = int(rng.integers(6, 15)), rng.uniform(1.8, 3.2)
    slant = rng.uniform(-12, 12) if rng.random() < 0.5 else 0.0
    for k in range(n):
        sk.box(m, x0 + breech * 0.2 + pitch * k, y0 + height * 0.6, pitch * 0.45, height * 0.7,
               2.6, angle_deg=slant, cut=True)
    if rng.random() < 0.35:  # front serrations
        for k in range(n // 2):
            sk.box(m, x0 + length - nose - 6 - pitch * k, y0 + height * 0.6, pitch * 0.45,
                   height * 0.6, 2.6, angle_deg=slant, cut=True)
    port_x, port_len = rng.uniform(0.36, 0.46) * length, rng.uniform(0.16, 0.22) * length
    port_h = height * rng.uniform(0.45, 0.6)
    sk.box(m, x0 + port_x + port_len / 2, y0 + port_h / 2 - 1, port_len, port_h, width * 0.5,
           r=2, cut=True)
    sk.box(m, x0 + length - rng.uniform(6, 10), y0 - 1.5, rng.uniform(3, 5), 3.5,
           rng.uniform(3, 4), r=0.8)
    sk.box(m, x0 + rng.uniform(6, 12), y0 - 2.0, rng.uniform(7, 11), 4.0, width * 0.8, r=1)
    return width


@dataclass(frozen=True)
class Grip:
    """Where a frame's grip sits, so a magazine can be slid into it."""

    x: float  # top centre of the grip
    y: float
    angle_deg: float
    width: float
    length: float


def draw_frame(sk: Sketch, rng: np.random.Generator, *, length: float | None = None,
               material: str | None = None, x0: float = 0.0, y0: float = 0.0) -> Grip:
    """Pistol frame: rail, hollow grip at an angle, trigger guard loop, trigger, pins."""
    mat = material or str(rng.choice(["plastic", "plastic", "steel", "aluminium"]))
    length = length or rng.uniform(140, 185)
    width = rng.uniform(24, 30)
    wall = rng.uniform(2.5, 4.0) if mat == "plastic" else rng.uniform(2.0, 3.0)
    rail_h = rng.uniform(10, 15)
    sk.box(mat, x0 + length * 0.48, y0 + rail_h / 2, length * 0.96, rail_h, width * 0.7, r=2)
    theta, gw, gl = rng.uniform(10, 24), rng.uniform(30, 38), rng.uniform(75, 98)
    gx, gy = x0 + gw / 2 + rng.uniform(2, 8), y0 + rail_h * 0.6
    with sk.placed(gx, gy, theta):
        sk.box(mat, 0, gl / 2, gw, gl, 2 * wall, r=5)
        sk.box(mat, -gw / 2 + 3.5, gl / 2, 7, gl - 2, width - 2 * wall, r=3)
        sk.box(mat, gw / 2 - 2, gl / 2, 4, gl - 6, width - 2 * wall, r=2)
        if rng.random() < 0.6:  # grip texture
            for k in range(int(gl // 6)):
                sk.box(mat, 0, 5 + 6 * k, gw - 4, 1.5, 1.2, cut=True)
    sk.polygon(mat, [(x0 - 8, y0 + 2), (x0 + 4, y0 + 1), (x0 + 4, y0 + rail_h),
                     (x0 - 4, y0 + rail_h + 4)], width * 0.6)  # beavertail
    ga, gb = rng.uniform(17, 24), rng.uniform(20, 28)
    cx = gx + gw / 2 + ga - 2
    phi = np.linspace(math.pi, 0.0, 14)
    guard = np.stack([cx + ga * np.cos(phi), y0 + rail_h - 1 + gb * np.sin(phi)], 1)
    sk.wire(mat, guard, rng.uniform(2.2, 3.2))
    tmat = "steel" if rng.random() < 0.5 else mat
    ts = np.linspace(0.0, 1.0, 6)
    trig = np.stack([cx - ga * 0.35 + 5 * ts ** 2, y0 + rail_h + gb * 0.72 * ts], 1)
    sk.wire(tmat, trig, rng.uniform(1.6, 2.4))
    for k in range(int(rng.integers(2, 4))):
        px = x0 + rng.uniform(0.15, 0.6) * length
        sk.ellipse("steel", px + 9 * k, y0 + rail_h * rng.uniform(0.3, 0.7), 1.5, 1.5, width)
    if mat == "plastic":
        for px in (x0 + 10, x0 + length * rng.uniform(0.6, 0.85)):
            sk.box("steel", px, y0 + 1.5, rng.uniform(8, 16), 3, width * 0.8, r=0.8)
    return Grip(gx, gy, theta, gw, gl)


def draw_coil(sk: Sketch, length: float, coil_r: float, wire_r: float, pitch: float, *,
              x0: float = 0.0, y0: float = 0.0, mat: str = "steel", closed_ends: int = 2) -> None:
    """Coil spring seen from the side: front and back half-turns as sinusoidal wires."""
    xs = [x0]
    tight = 2.2 * wire_r
    while xs[-1] < x0 + length:
        near_end = xs[-1] - x0 < closed_ends * tight or x0 + length - xs[-1] < closed_ends * tight
        xs.append(xs[-1] + (tight if near_end else pitch) / 2)
    xs = np.minimum(xs, x0 + length)
    for i in range(len(xs) - 1):
        t = np.linspace(0.0, 1.0, 4)
        sign = 1.0 if i % 2 == 0 else -1.0
        pts = np.stack([xs[i] + (xs[i + 1] - xs[i]) * t,
                        y0 + sign * coil_r * np.cos(math.pi * t)], 1)
        sk.wire(mat, pts, wire_r)


def draw_spring(sk: Sketch, rng: np.random.Generator) -> None:
    """A loose coil spring (recoil, magazine or trigger spring)."""
    wire_r = rng.uniform(0.45, 1.0)
    length = rng.uniform(40, 140)
    pitch = rng.uniform(max(5 * wire_r, 2.5), 7.5)
    pitch = max(pitch, length / 34)
    draw_coil(sk, length, rng.uniform(3.5, 8.0), wire_r, pitch, closed_ends=int(rng.integers(0, 3)))


@dataclass(frozen=True)
class Cartridge:
    """Dimensions of one round, so a magazine holds identical rounds."""

    case_len: float
    case_r: float
    neck_r: float  # == case_r for straight pistol cases
    bullet_len: float
    tip_r: float


def sample_cartridge(rng: np.random.Generator, rifle: bool | None = None) -> Cartridge:
    """Random pistol (straight) or rifle (bottleneck) cartridge dimensions."""
    rifle = rng.random() < 0.3 if rifle is None else rifle
    if rifle:
        return Cartridge(rng.uniform(38, 56), rng.uniform(5.4, 6.2), rng.uniform(3.1, 4.0),
                         rng.uniform(22, 30), rng.uniform(0.4, 1.0))
    r = rng.uniform(4.4, 5.8)
    return Cartridge(rng.uniform(17, 30), r, r, rng.uniform(11, 17), rng.uniform(0.9, 2.8))


def draw_cartridge(sk: Sketch, c: Cartridge, *, x0: float = 0.0, y0: float = 0.0) -> None:
    """Brass case with powder and a lead bullet, base at x0, pointing to +x."""
    wall = 0.45
    sk.rod("brass", (x0, y0), (x0 + 1.3, y0), c.case_r * 1.03, caps=False)
    sk.rod("brass", (x0 + 1.3, y0), (x0 + 2.1, y0), c.case_r, wall=0.8, caps=False)
    body = c.case_len if c.neck_r == c.case_r else c.case_len * 0.78
    sk.rod("brass", (x0 + 2.1, y0), (x0 + body, y0), c.case_r, c.case_r * 0.98, wall=wall,
           caps=False)
    sk.rod("brass", (x0 + 2.1, y0), (x0 + 4.0, y0), c.case_r - wall, caps=False)
    if body < c.case_len:
        sh = c.case_len * 0.07
        sk.rod("brass", (x0 + body, y0), (x0 + body + sh, y0), c.case_r * 0.98, c.neck_r,
               wall=wall, caps=False)
        sk.rod("brass", (x0 + body + sh, y0), (x0 + c.case_len, y0), c.neck_r, wall=wall,
               caps=False)
    seat = min(c.bullet_len * 0.35, c.case_len * 0.3)
    base = x0 + c.case_len - seat
    sk.rod("organic", (x0 + 4.0, y0), (base, y0), c.case_r - wall - 0.1, caps=False)
    br = c.neck_r - wall
    shank = c.bullet_len * 0.45
    sk.rod("lead", (base, y0), (base + shank, y0), br, caps=False)
    sk.rod("lead", (base + shank, y0), (base + c.bullet_len, y0), br, c.tip_r)


def draw_magazine(sk: Sketch, rng: np.random.Generator, *, height: float | None = None,
                  width: float | None = None, angle_deg: float | None = None,
                  rounds: int | None = None, x0: float = 0.0, y0: float = 0.0) -> None:
    """Box magazine (top at the origin, hanging down), follower, zig-zag spring, rounds."""
    height = height or rng.uniform(95, 135)
    width = width or rng.uniform(27, 36)
    angle_deg = rng.uniform(-16, 16) if angle_deg is None else angle_deg
    bend = rng.uniform(-0.12, 0.12) * width if rng.random() < 0.4 else 0.0
    depth, sheet = rng.uniform(19, 25), rng.uniform(0.7, 1.0)
    ys = np.linspace(0.0, height, 6 if bend else 2)
    xc = bend * (ys / height) ** 2 * 4 - bend * 2 * (ys / height)

    def band(a: float, b: float) -> np.ndarray:
        return np.concatenate([np.stack([xc + a, ys], 1), np.stack([xc + b, ys], 1)[::-1]])

    c = sample_cartridge(rng, rifle=False)
    c = Cartridge(min(c.case_len, width * 0.6), c.case_r, c.case_r, width * 0.3, c.tip_r)
    step = c.case_r * 1.75
    max_rounds = int((height - 25) / step)
    rounds = int(rng.integers(0, max_rounds + 1)) if rounds is None else min(rounds, max_rounds)
    with sk.placed(x0, y0, angle_deg):
        sk.polygon("steel", band(-width / 2, width / 2), 2 * sheet)
        sk.polygon("steel", band(-width / 2, -width / 2 + 1.6), depth - 2 * sheet)
        sk.polygon("steel", band(width / 2 - 1.6, width / 2), depth - 2 * sheet)
        for sx in (-1, 1):
            sk.polygon("steel", [(sx * width * 0.5, 0), (sx * width * 0.2, -2.5),
                                 (sx * width * 0.1, -2.5), (sx * width * 0.3, 2)], depth * 0.7)
        base_mat = "plastic" if rng.random() < 0.5 else "steel"
        sk.box(base_mat, xc[-1], height + 2.5, width + 5, 5, depth + 3, r=2)
        for k in range(rounds):
            y = 2 + c.case_r + k * step
            x = float(np.interp(y, ys, xc)) - (c.case_len + c.bullet_len * 0.65) / 2
            draw_cartridge(sk, c, x0=x + (1.5 if k % 2 else -1.5), y0=y)
        yf = 3 + rounds * step + 3
        sk.box("plastic", float(np.interp(yf, ys, xc)), yf, width * 0.85, 6, depth - 3, r=1.5)
        n = int(rng.integers(5, 10))
        yz = np.linspace(yf + 3, height - 1, n + 1)
        xz = np.interp(yz, ys, xc) + np.where(np.arange(n + 1) % 2, 1, -1) * (width / 2 - 2.5)
        sk.wire("steel", np.stack([xz, yz], 1), rng.uniform(0.55, 0.8))


def draw_cylinder(sk: Sketch, rng: np.random.Generator, *, end_on: bool | None = None,
                  radius: float | None = None, x0: float = 0.0, y0: float = 0.0) -> float:
    """Revolver cylinder with 5-8 chambers, end-on or from the side; returns its length."""
    end_on = rng.random() < 0.6 if end_on is None else end_on
    rad, length, n = radius or rng.uniform(16, 21), rng.uniform(36, 44), int(rng.integers(5, 9))
    rc = rad * rng.uniform(0.55, 0.62)
    r_ch = min(rng.uniform(4.2, 5.2), rc * math.sin(math.pi / n) * 0.82)
    phase = rng.uniform(0, 2 * math.pi)
    loaded = rng.random() < 0.45
    angles = phase + 2 * math.pi * np.arange(n) / n
    if end_on:
        sk.ellipse("steel", x0, y0, rad, rad, length)
        sk.ellipse("steel", x0, y0, rng.uniform(2.5, 3.5), rng.uniform(2.5, 3.5), length, cut=True)
        fluted = rng.random() < 0.6
        for a in angles:
            px, py = x0 + rc * math.cos(a), y0 + rc * math.sin(a)
            sk.ellipse("steel", px, py, r_ch, r_ch, length, cut=True)
            if fluted:
                b = a + math.pi / n
                sk.ellipse("steel", x0 + rad * 1.03 * math.cos(b), y0 + rad * 1.03 * math.sin(b),
                           3.2, 3.2, length * 0.7, cut=True)
            if loaded and rng.random() < 0.85:
                sk.ellipse("brass", px, py, r_ch * 0.96, r_ch * 0.96, length * 0.7)
                sk.ellipse("brass", px, py, r_ch * 0.84, r_ch * 0.84, length * 0.7, cut=True)
                sk.ellipse("brass", px, py, r_ch * 0.96, r_ch * 0.96, 2.5)
                sk.ellipse("lead", px, py, r_ch * 0.82, r_ch * 0.82, rng.uniform(8, 14))
        return length
    sk.rod("steel", (x0, y0), (x0 + length, y0), rad, caps=False)
    for a in angles:
        y = y0 + rc * math.cos(a)
        sk.rod("steel", (x0 - 1, y), (x0 + length + 1, y), r_ch, caps=False, cut=True)
        if loaded:
            c = Cartridge(length * 0.75, r_ch * 0.95, r_ch * 0.95, length * 0.4, r_ch * 0.5)
            draw_cartridge(sk, c, x0=x0, y0=y)
    return length


def draw_firing_pin(sk: Sketch, rng: np.random.Generator) -> None:
    """Firing pin or striker: thin steel rod, tapered tip, collar, rear lug or spring."""
    length, r = rng.uniform(45, 85), rng.uniform(1.1, 2.0)
    sk.rod("steel", (0, 0), (length * 0.82, 0), r, caps=False)
    sk.rod("steel", (length * 0.82, 0), (length, 0), r, r * 0.45)
    xc = length * rng.uniform(0.2, 0.45)
    sk.rod("steel", (xc, 0), (xc + rng.uniform(2, 4), 0), r * rng.uniform(1.6, 2.3), caps=False)
    if rng.random() < 0.5:
        sk.box("steel", 3, r * 1.2, 6, r * 4.4, r * 2, r=0.6)
    else:
        sk.rod("steel", (-2, 0), (0.5, 0), r * 1.5, caps=False)
    if rng.random() < 0.4:
        draw_coil(sk, xc - 2, r * 1.9, 0.35, rng.uniform(1.6, 3.0), x0=1.0)


def draw_trigger_group(sk: Sketch, rng: np.random.Generator) -> None:
    """Fire-control group: trigger lever and blade, hammer, torsion springs, pins, housing."""
    tl, depth = rng.uniform(35, 48), rng.uniform(6, 9)
    if rng.random() < 0.5:
        sk.box(str(rng.choice(["aluminium", "steel"])), tl * 0.55, -4, tl * 1.5, 34, 2.4, r=3)
    sk.box("steel", tl * 0.3, 0, tl, 6, depth, r=2)
    ts = np.linspace(0.0, 1.0, 7)
    bx = 2 + rng.uniform(2, 7) * ts ** 2
    sk.wire("steel", np.stack([bx, 2 + rng.uniform(20, 28) * ts], 1), rng.uniform(2.0, 2.8))
    sk.polygon("steel", [(tl * 0.5, -3), (tl * 0.95, -4), (tl * 0.9, -8), (tl * 0.55, -7)],
               depth * 0.8)
    hx = tl * rng.uniform(0.85, 1.0)
    with sk.placed(hx, -2, rng.uniform(-45, 10)):
        sk.polygon("steel", [(-5, 3), (5, 3), (6, -18), (9, -28), (2, -30), (-4, -20)], depth)
        sk.ellipse("steel", 0, 0, 2.0, 2.0, depth, cut=True)
    for px, py in ((0.0, 0.0), (hx, -2.0)):
        turns = rng.uniform(3, 6)
        sk.ellipse("steel", px, py, 4.2, 4.2, turns * 1.3)
        sk.ellipse("steel", px, py, 3.0, 3.0, turns * 1.3, cut=True)
        sk.ellipse("steel", px, py, 1.6, 1.6, rng.uniform(18, 24))
        sk.wire("steel", [(px + 3.5, py + 2), (px + rng.uniform(10, 16), py + rng.uniform(-3, 6))],
                0.6)
    if rng.random() < 0.6:
        draw_coil(sk, rng.uniform(8, 14), 2.2, 0.4, 1.5, x0=tl * 0.45, y0=-10)


def draw_suppressor(sk: Sketch, rng: np.random.Generator) -> None:
    """Suppressor: outer tube, threaded rear mount, end cap and flat or cone baffles."""
    rad, length = rng.uniform(14, 22), rng.uniform(120, 210)
    mat = "aluminium" if rng.random() < 0.45 else "steel"
    wall, hole = rng.uniform(1.0, 2.0), rng.uniform(4.5, 6.5)
    inner = rad - wall
    sk.rod(mat, (0, 0), (length, 0), rad, wall=wall, caps=False)
    sk.rod("steel", (0, 0), (rng.uniform(15, 25), 0), rad * 0.6, wall=rad * 0.6 - hole * 1.2,
           caps=False)
    for x in (0.0, length - 4):
        sk.rod(mat, (x, 0), (x + 4, 0), inner, wall=inner - hole, caps=False)
    n, cone = int(rng.integers(5, 11)), rng.random() < 0.5
    tb, cl = rng.uniform(1.2, 2.2), rng.uniform(8, 14)
    for x in np.linspace(30, length - 14, n):
        if cone:
            for s in (-1, 1):
                sk.polygon(mat, [(x, s * hole), (x + tb, s * hole), (x + tb - cl, s * inner),
                                 (x - cl, s * inner)], inner * 1.2)
        else:
            sk.rod(mat, (x, 0), (x + tb, 0), inner, wall=inner - hole, caps=False)


def draw_bolt(sk: Sketch, rng: np.random.Generator) -> None:
    """Rifle bolt: body with firing-pin channel, locking lugs, handle with knob, shroud."""
    r, length = rng.uniform(8, 10.5), rng.uniform(85, 130)
    sk.rod("steel", (0, 0), (length, 0), r, wall=r - rng.uniform(2.5, 3.5), caps=False)
    sk.rod("steel", (-2, 0), (length - 3, 0), rng.uniform(1.4, 2.0))
    for s in (-1, 1):
        sk.box("steel", length - 6, s * (r + 1.2), 9, 3.4, 8, r=1)
    hx = rng.uniform(8, 25)
    tip = (hx - rng.uniform(0, 12), r + rng.uniform(35, 55))
    sk.rod("steel", (hx, 0), tip, rng.uniform(3.0, 4.5))
    sk.ball("steel", tip[0], tip[1], rng.uniform(6, 9))
    shroud = rng.uniform(15, 25)
    sk.rod("steel", (-shroud, 0), (0, 0), r * 0.8, caps=False)
    if rng.random() < 0.5:
        sk.box("steel", -shroud * 0.5, -r * 0.9, 8, 5, 4, r=1)
    sk.box("steel", length * 0.7, -r + 0.5, length * 0.35, 2.0, 3.0)
