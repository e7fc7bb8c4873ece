"""Photo-like renderings of the synthetic parts for the demo gallery.

The part's thickness map doubles as a relief: its gradient gives surface
normals for simple Lambert + specular shading in dark metal or polymer tones.
The part lies on a light textured background (wood, cloth or paper), casts a
soft shadow, and is optionally seen under a slight perspective tilt.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from synth.detector import gaussian_blur
from synth.materials import MATERIALS
from synth.shapes import render_part

_STEEL_FINISHES = ((42, 46, 58), (34, 34, 37), (150, 152, 158), (72, 74, 70), (88, 90, 96))
_POLYMER_FINISHES = ((30, 30, 33), (52, 52, 50), (150, 128, 96), (78, 84, 64))
BACKGROUNDS: tuple[str, ...] = ("wood", "cloth", "paper")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Light textured background, float32 RGB in [0, 1]."""
    kind = str(rng.choice(BACKGROUNDS))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    fine = rng.standard_normal((size, size)).astype(np.float32)
    if kind == "wood":
        r = rng.uniform(0.72, 0.88)
        g = r * rng.uniform(0.8, 0.88)
        base = np.array([r, g, g * rng.uniform(0.68, 0.8)])
        a = rng.uniform(0, math.pi)
        along = xx * math.cos(a) + yy * math.sin(a)
        across = -xx * math.sin(a) + yy * math.cos(a)
        warp = gaussian_blur(rng.standard_normal((size, size)).astype(np.float32), size / 24)
        grain = np.sin((across * rng.uniform(30, 60) + warp * 12 + along * 2) * math.pi)
        tex = 1 + 0.06 * grain + 0.02 * gaussian_blur(fine, 0.8)
    elif kind == "cloth":
        base = np.full(3, rng.uniform(0.75, 0.9)) + rng.uniform(-0.08, 0.06, 3)
        f = size / rng.uniform(2.5, 4.0)
        weave = np.sin(xx * f * math.pi) * np.sin(yy * f * math.pi)
        tex = 1 + 0.04 * weave + 0.03 * gaussian_blur(fine, 0.6)
    else:
        base = np.full(3, rng.uniform(0.85, 0.95)) + rng.uniform(-0.03, 0.03, 3)
        tex = 1 + 0.015 * fine + 0.08 * (xx - 0.5) * rng.uniform(-1, 1)
    return np.clip(base[None, None, :] * tex[..., None], 0, 1).astype(np.float32)


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist())


def _shade(rng: np.random.Generator, layers: dict[str, np.ndarray]) -> np.ndarray:
    """RGBA float32 of the shaded part from its per-material thickness maps."""
    total = sum(layers.values())
    steel = np.array(_STEEL_FINISHES[rng.integers(len(_STEEL_FINISHES))], np.float32)
    polymer = np.array(_POLYMER_FINISHES[rng.integers(len(_POLYMER_FINISHES))], np.float32)
    colour = np.zeros(total.shape + (3,), np.float32)
    for name, t in layers.items():
        rgb = {"steel": steel, "plastic": polymer}.get(name, np.array(MATERIALS[name].rgb))
        colour += (t * MATERIALS[name].density)[..., None] * (rgb / 255.0)
    mass = sum(t * MATERIALS[name].density for name, t in layers.items())
    colour /= np.maximum(mass, 1e-6)[..., None]
    height = gaussian_blur(np.sqrt(total), 1.0)
    gy, gx = np.gradient(height)
    k = rng.uniform(2.0, 4.0)
    n = np.stack([-gx * k, -gy * k, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    az = rng.uniform(0, 2 * math.pi)
    light = np.array([math.cos(az) * 0.5, math.sin(az) * 0.5, 0.85])
    light /= np.linalg.norm(light)
    half = light + np.array([0, 0, 1.0])
    half /= np.linalg.norm(half)
    diffuse = np.clip(n @ light, 0, 1)
    spec = np.clip(n @ half, 0, 1) ** rng.uniform(20, 60) * rng.uniform(0.25, 0.6)
    rgb = colour * (0.45 + 0.75 * diffuse[..., None]) + spec[..., None]
    alpha = np.clip(total / 0.4, 0, 1)
    return np.concatenate([np.clip(rgb, 0, 1), alpha[..., None]], -1).astype(np.float32)


def render_photo(kind: str, seed: int, size: int = 256) -> Image.Image:
    """Photo-like RGB image of a random instance of ``kind`` on a light textured surface."""
    if size < 32:
        raise ValueError("size must be at least 32 pixels")
    rng = np.random.default_rng(seed)
    angle = float(rng.uniform(-30, 30) + (180 if rng.random() < 0.3 else 0))
    part = render_part(kind, rng, size_px=int(size * rng.uniform(0.6, 0.82)), angle_deg=angle,
                       flip=bool(rng.random() < 0.5))
    ph, pw = part.thickness.shape
    y0 = (size - ph) // 2 + int(rng.integers(-size // 16, size // 16 + 1))
    x0 = (size - pw) // 2 + int(rng.integers(-size // 16, size // 16 + 1))
    y0, x0 = min(max(y0, 0), size - ph), min(max(x0, 0), size - pw)
    layers = {}
    for name, t in part.layers.items():
        full = np.zeros((size, size), np.float32)
        full[y0:y0 + ph, x0:x0 + pw] = t
        layers[name] = full
    obj = _shade(rng, layers)
    dx, dy = rng.uniform(-1, 1, 2) * size * 0.02
    shadow = np.roll(gaussian_blur(obj[..., 3], size / 60), (int(dy), int(dx)), axis=(0, 1))
    rgba = np.concatenate([obj, shadow[..., None]], -1)
    if rng.random() < 0.5:
        src = np.array([(0, 0), (size, 0), (size, size), (0, size)], float)
        dst = src + rng.uniform(-0.08, 0.08, (4, 2)) * size
        coeffs = _perspective_coeffs(src, dst)
        chans = [Image.fromarray(rgba[..., i], mode="F").transform(
            (size, size), Image.PERSPECTIVE, coeffs, Image.BILINEAR) for i in range(5)]
        rgba = np.stack([np.asarray(c) for c in chans], -1)
    bg = _background(rng, size)
    bg *= 1 - rng.uniform(0.3, 0.5) * np.clip(rgba[..., 4:5], 0, 1)
    a = np.clip(rgba[..., 3:4], 0, 1)
    img = bg * (1 - a) + rgba[..., :3] * a
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    img *= (1 - rng.uniform(0.1, 0.3) * (xx ** 2 + yy ** 2))[..., None]
    img += rng.normal(0, 0.012, img.shape)
    return Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), mode="RGB")
