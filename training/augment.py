"""Augmentations per modality, applied to decoded PIL images before the model's preprocessing.

Photo: random crops, perspective, colour, blur, JPEG re-compression, horizontal flips.
X-ray: any rotation, flips, scale, gamma/contrast, and threat image projection: the object's
transmission is multiplied into a cluttered background (stacked transmissions multiply under
Beer-Lambert). Every function takes an explicit ``numpy.random.Generator`` so runs are
reproducible from one seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from matcher.preprocess import xray_to_transmission
from synth.projection import random_projection


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the augmentations (0 disables a probability-driven one)."""

    crop_scale: tuple[float, float] = (0.55, 1.0)
    perspective: float = 0.15
    p_perspective: float = 0.3
    colour: float = 0.3
    p_grey: float = 0.1
    p_blur: float = 0.2
    p_jpeg: float = 0.3
    p_flip: float = 0.5
    xray_scale: tuple[float, float] = (0.7, 1.3)
    xray_gamma: tuple[float, float] = (0.7, 1.4)
    p_projection: float = 0.5


def augment(
    img: Image.Image, modality: str, rng: np.random.Generator, cfg: AugmentConfig
) -> Image.Image:
    """One random augmented view of ``img`` for ``modality``."""
    if modality == "xray":
        return augment_xray(img, rng, cfg)
    return augment_photo(img, rng, cfg)


def random_crop(
    img: Image.Image, rng: np.random.Generator, scale: tuple[float, float]
) -> Image.Image:
    """A crop covering a random fraction of the area with aspect ratio in [3/4, 4/3]."""
    w, h = img.size
    area = w * h * rng.uniform(*scale)
    ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    cw = int(min(w, round(np.sqrt(area * ratio))))
    ch = int(min(h, round(np.sqrt(area / ratio))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def random_perspective(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Move each corner inwards by up to ``strength`` of the side, then rectify."""
    w, h = img.size
    dx, dy = strength * w, strength * h
    quad = [
        (rng.uniform(0, dx), rng.uniform(0, dy)),
        (rng.uniform(0, dx), h - rng.uniform(0, dy)),
        (w - rng.uniform(0, dx), h - rng.uniform(0, dy)),
        (w - rng.uniform(0, dx), rng.uniform(0, dy)),
    ]
    flat = [float(c) for xy in quad for c in xy]
    return img.transform((w, h), Image.QUAD, flat, resample=Image.BILINEAR)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (compression artefacts of forwarded photos)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def augment_photo(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    """Crop, perspective, flip, colour, blur and JPEG for a phone or web photo."""
    img = ImageOps.exif_transpose(img).convert("RGB")
    img = random_crop(img, rng, cfg.crop_scale)
    if rng.random() < cfg.p_perspective:
        img = random_perspective(img, rng, cfg.perspective)
    if rng.random() < cfg.p_flip:
        img = ImageOps.mirror(img)
    if cfg.colour > 0:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(float(rng.uniform(1 - cfg.colour, 1 + cfg.colour)))
    if rng.random() < cfg.p_grey:
        img = ImageOps.grayscale(img).convert("RGB")
    if rng.random() < cfg.p_blur:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < cfg.p_jpeg:
        img = jpeg_roundtrip(img, int(rng.integers(30, 90)))
    return img


def clutter_background(shape: tuple[int, int], rng: np.random.Generator, n: int = 12) -> np.ndarray:
    """A cluttered bag-like transmission image: overlapping soft rectangles and ellipses."""
    h, w = shape
    att = np.zeros((h, w), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.35) * w, rng.uniform(0.05, 0.35) * h
        mu = rng.uniform(0.05, 0.6)
        if rng.random() < 0.5:
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        else:
            inside = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
        att += mu * inside
    return np.exp(-att).astype(np.float32)


def project_into_clutter(obj_t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Threat image projection: multiply the object's transmission into a random background."""
    h, w = obj_t.shape
    side = int(max(h, w) * rng.uniform(1.2, 1.8))
    background = clutter_background((side, side), rng)
    out, _ = random_projection(background, obj_t, rng, scale_range=(0.8, 1.0))
    return out


def augment_xray(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig) -> Image.Image:
    """Rotation, flips, scale, gamma/contrast and projection for an X-ray scan.

    Returns a 32-bit float ("F") transmission image, which the model's X-ray preprocessing
    accepts as it is.
    """
    t = xray_to_transmission(img)
    pil = Image.fromarray(t, "F")
    scale = float(rng.uniform(*cfg.xray_scale))
    pil = pil.resize(
        (max(8, round(pil.width * scale)), max(8, round(pil.height * scale))), Image.BILINEAR
    )
    pil = pil.rotate(float(rng.uniform(0, 360)), Image.BILINEAR, expand=True, fillcolor=1.0)
    t = np.asarray(pil, dtype=np.float32)
    if rng.random() < 0.5:
        t = t[:, ::-1]
    if rng.random() < 0.5:
        t = t[::-1, :]
    t = np.clip(t, 0.0, 1.0) ** float(rng.uniform(*cfg.xray_gamma))
    if rng.random() < cfg.p_projection:
        t = project_into_clutter(np.ascontiguousarray(t), rng)
    # Keep a sliver of empty belt so the flat-field white point stays at 1.0.
    t = np.pad(t, 2, constant_values=1.0)
    return Image.fromarray(np.ascontiguousarray(t, dtype=np.float32), "F")
