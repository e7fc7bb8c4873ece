"""A bag on the belt: container walls, folded clothes, and placing objects inside it.

Shared by the default parcel scene (``parcel.render_parcel``) and styled scenes
(``scene.compose``); all sizes are millimetres unless a name says pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from synth.materials import attenuation
from synth.projection import Box, tight_box
from synth.shapes import Part, render_part
from synth.sketch import Sketch, rasterize

CONTAINERS: tuple[str, ...] = ("suitcase", "carton", "soft_bag")
OBJECT_THRESHOLD = 0.98  # an object pixel transmits less than this on its own


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] by bicubic upsampling of a coarse random grid."""
    h, w = shape
    ch = max(2, int(round(cells * h / max(h, w))))
    cw = max(2, int(round(cells * w / max(h, w))))
    coarse = Image.fromarray(rng.random((ch, cw), dtype=np.float32), mode="F")
    return np.clip(np.asarray(coarse.resize((w, h), Image.BICUBIC)), 0.0, 1.0)


def draw_container(sk: Sketch, inner: Sketch, rng: np.random.Generator, kind: str, cx: float,
               cy: float, bw: float, bh: float) -> float:
    """Draw the container (mm) in ``sk`` and its inside in ``inner``; return the wall width."""
    if kind == "suitcase":
        ww, r = rng.uniform(4, 8), rng.uniform(20, 60)
        depth = rng.uniform(60, 140)
        sk.box("plastic", cx, cy, bw, bh, depth, r=r)
        sk.box("plastic", cx, cy, bw - 2 * ww, bh - 2 * ww, depth, r=r - ww, cut=True)
        inner.box("organic", cx, cy, bw - 2 * ww, bh - 2 * ww, 1.0, r=r - ww)
        sk.box("plastic", cx, cy, bw, bh, rng.uniform(4, 8), r=r)
        side = rng.choice([-1, 1])
        for dy in (-1, 1):
            y = cy + dy * bh * rng.uniform(0.15, 0.3)
            sk.rod("aluminium", (cx - bw / 2 + 25, y), (cx + bw / 2 - 40, y),
                   rng.uniform(7, 11), wall=1.2, caps=False)
        sk.box("plastic", cx + side * (bw / 2 - 20), cy, 25, bh * 0.6, 30, r=6)
        for sx in (-1, 1):
            for sy in ((-1, 1) if rng.random() < 0.5 else (1,)):
                wx, wy = cx + sx * (bw / 2 - 30), cy + sy * (bh / 2 - 30)
                sk.ellipse("plastic", wx, wy, 28, 22, 40)
                sk.ellipse("steel", wx, wy, 4, 4, 40)
        inset = 14.0
        x0, y0 = cx - bw / 2 + inset, cy - bh / 2 + inset
        x1, y1 = cx + bw / 2 - inset, cy + bh / 2 - inset
        sk.wire("steel", [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 30)], 0.9)
        return ww
    if kind == "carton":
        ww = rng.uniform(4, 7)
        depth = rng.uniform(60, 150)
        sk.box("organic", cx, cy, bw, bh, depth, r=2)
        sk.box("organic", cx, cy, bw - 2 * ww, bh - 2 * ww, depth, r=1, cut=True)
        inner.box("organic", cx, cy, bw - 2 * ww, bh - 2 * ww, 1.0, r=1)
        sk.box("organic", cx, cy, bw, bh, rng.uniform(6, 10), r=2)
        for k in range(int(rng.integers(0, 8))):
            sx = cx - bw / 2 + bw * (k + 0.5) / 8
            sk.box("steel", sx, cy - bh / 2 + ww / 2, 12, 1.2, 0.7)
        return ww
    ww = rng.uniform(5, 10)
    phi = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    wobble = 1 + sum(rng.uniform(0, 0.03) * np.sin(k * phi + rng.uniform(0, 6)) for k in (2, 3, 5))
    ex, ey = np.sign(np.cos(phi)) * np.abs(np.cos(phi)) ** 0.5, np.sign(np.sin(phi)) * np.abs(
        np.sin(phi)) ** 0.5
    pts = np.stack([ex * wobble * bw / 2, ey * wobble * bh / 2], 1)
    depth = rng.uniform(40, 80)
    sk.polygon("organic", pts * 1.0 + (cx, cy), depth)
    shrink = 1 - 2 * ww / min(bw, bh)
    sk.polygon("organic", pts * shrink + (cx, cy), depth, cut=True)
    inner.polygon("organic", pts * shrink + (cx, cy), 1.0)
    sk.polygon("organic", pts + (cx, cy), rng.uniform(3, 6))
    t = np.linspace(0, 1, 12)
    strap = np.stack([cx - bw * 0.45 + bw * 0.9 * t,
                      cy + bh * rng.uniform(-0.3, 0.3) + bh * 0.25 * np.sin(t * math.pi * 1.5)], 1)
    sk.wire("organic", strap, rng.uniform(6, 12))
    for end in (strap[0], strap[-1]):
        sk.box("steel", end[0], end[1], 30, 22, 3, r=3)
        sk.box("steel", end[0], end[1], 24, 16, 3, r=2, cut=True)
    sk.wire("steel", [(cx - bw * 0.35, cy - bh * 0.42), (cx + bw * 0.35, cy - bh * 0.42)], 1.0)
    return ww


def draw_clothes(sk: Sketch, rng: np.random.Generator, cx: float, cy: float, bw: float,
             bh: float) -> int:
    """Folded garments as rounded organic slabs with fold ridges; returns how many."""
    n = int(rng.integers(2, 7))
    for _ in range(n):
        w, h = bw * rng.uniform(0.25, 0.65), bh * rng.uniform(0.25, 0.6)
        gx, gy = cx + rng.uniform(-0.3, 0.3) * bw, cy + rng.uniform(-0.3, 0.3) * bh
        ang = rng.uniform(-25, 25)
        sk.box("organic", gx, gy, w, h, rng.uniform(4, 20), angle_deg=ang,
               r=rng.uniform(5, min(w, h) / 3))
        a = math.radians(ang)
        for _ in range(int(rng.integers(0, 4))):
            off = rng.uniform(-0.4, 0.4) * h
            dx, dy = math.cos(a) * w * 0.45, math.sin(a) * w * 0.45
            ox, oy = -math.sin(a) * off, math.cos(a) * off
            sk.rod("organic", (gx + ox - dx, gy + oy - dy), (gx + ox + dx, gy + oy + dy),
                   rng.uniform(2, 6))
    return n


def bag_background(rng: np.random.Generator, container: str, cxp: float, cyp: float,
                   bw_px: float, bh_px: float, pitch: float, w: int, h: int,
                   clothes_prob: float | None = None):
    """A container (and clothes inside) rendered to per-energy attenuation.

    Returns ``(acc, region, clutter)``: {"high", "low"} attenuation maps, the inner region
    (x0, y0, x1, y1) in pixels, and the container's and clothes' boxes. ``clothes_prob``
    None always packs clothes; otherwise one draw decides (after the container is drawn).
    """
    scene, inside, clothes = Sketch(), Sketch(), Sketch()
    wall = draw_container(scene, inside, rng, container, cxp * pitch, cyp * pitch,
                          bw_px * pitch, bh_px * pitch)
    pack = clothes_prob is None or rng.random() < clothes_prob
    n_clothes = draw_clothes(clothes, rng, cxp * pitch, cyp * pitch, bw_px * pitch,
                             bh_px * pitch) if pack else 0
    frame = {"mm_per_px": pitch, "extent": (0, 0, w * pitch, h * pitch), "margin_px": 0}
    layers, _ = rasterize(scene, **frame)
    acc = {e: attenuation(layers, e) for e in ("high", "low")}
    if n_clothes:
        fabric = rasterize(clothes, **frame)[0]["organic"]
        fabric *= rasterize(inside, **frame)[0]["organic"]
        fabric *= 0.45 + 1.1 * smooth_noise(rng, (h, w), int(rng.integers(5, 11)))
        for e in ("high", "low"):
            acc[e] += attenuation({"organic": fabric}, e)
    del layers
    inner = int(wall / pitch) + 2
    region = (int(cxp - bw_px / 2) + inner, int(cyp - bh_px / 2) + inner,
              int(cxp + bw_px / 2) - inner, int(cyp + bh_px / 2) - inner)
    clutter = [Box(int(cxp - bw_px / 2), int(cyp - bh_px / 2), int(bw_px), int(bh_px), container),
               *[Box(region[0], region[1], region[2] - region[0], region[3] - region[1],
                     "clothes")] * (n_clothes > 0)]
    return acc, region, clutter


def paste(acc: np.ndarray, patch: np.ndarray, x: int, y: int) -> tuple[slice, slice, np.ndarray]:
    """Add ``patch`` into ``acc`` at top-left (x, y), clipped; returns the used region."""
    h, w = acc.shape
    ph, pw = patch.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if x0 >= x1 or y0 >= y1:
        return slice(0, 0), slice(0, 0), patch[:0, :0]
    crop = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    acc[y0:y1, x0:x1] += crop
    return slice(y0, y1), slice(x0, x1), crop


def fitting_part(rng: np.random.Generator, kind: str, pitch: float, region) -> Part:
    """A clutter part at physical scale that fits the bag's inside (turned, else shrunk)."""
    rw, rh = region[2] - region[0], region[3] - region[1]
    flip = bool(rng.random() < 0.5)
    seed = int(rng.integers(2**63))
    aligned = rng.uniform(-10, 10) + (90.0 if rh > rw else 0.0)
    for angle in (rng.uniform(0, 360), aligned):
        part = render_part(kind, np.random.default_rng(seed), mm_per_px=pitch,
                           angle_deg=float(angle), flip=flip)
        ph, pw = part.thickness.shape
        if ph <= rh and pw <= rw:
            return part
    shrink = max(ph / rh, pw / rw)
    return render_part(kind, np.random.default_rng(seed), mm_per_px=pitch * shrink,
                       angle_deg=float(angle), flip=flip)


def position(rng: np.random.Generator, shape: tuple[int, int], region, centre=None):
    """Top-left for a patch: inside ``region`` (x0, y0, x1, y1) when it fits, else centred."""
    ph, pw = shape
    x0, y0, x1, y1 = region
    if centre is not None:
        return int(centre[0] - pw / 2), int(centre[1] - ph / 2)
    x = int(rng.integers(x0, x1 - pw + 1)) if x1 - x0 >= pw else int((x0 + x1 - pw) / 2)
    y = int(rng.integers(y0, y1 - ph + 1)) if y1 - y0 >= ph else int((y0 + y1 - ph) / 2)
    return x, y


def lay_part(rng: np.random.Generator, part: Part, kind: str, region, acc: dict,
             centre=None) -> list[Box]:
    """Place ``part`` in ``region`` (round ``centre`` if given) and add its attenuation to the
    bag's (``acc``, by energy); its box, if any of it shows."""
    att_h = attenuation(part.layers, "high")
    x, y = position(rng, att_h.shape, region, centre)
    sy, sx, crop = paste(acc["high"], att_h, x, y)
    paste(acc["low"], attenuation(part.layers, "low"), x, y)
    item = tight_box(np.exp(-crop) < OBJECT_THRESHOLD, kind, x0=sx.start, y0=sy.start)
    return [] if item is None else [item]
