"""Gallery augmentation for X-ray references: projected variants inside cluttered scans.

An isolated reference (one part on an empty belt) is multiplied into generated background
scans (transmissions multiply) at a random scale, angle and position, then cropped the way
``gunmatch.screening`` crops a proposal. The crops' vectors are stored as extra rows of the
same gallery item (``NewItem.vectors`` after the first, named by ``NewItem.variants``), so a
cluttered query can meet a cluttered version of its reference; search keeps the best one.

Backgrounds are rendered from a fixed seed range reserved for galleries, never used by the
benchmark's evaluation parcels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gunmatch.screening import ScreeningConfig, crop_boxes, crop_transmission
from matcher.embedder import Embedder
from matcher.images import load_image
from matcher.preprocess import grey_to_tensor, xray_to_transmission

# Seeds of gallery backgrounds; benchmarks draw evaluation parcels from other ranges.
GALLERY_BACKGROUND_SEED = 7_000_000


@dataclass(frozen=True)
class AugmentConfig:
    """How many projected variants to make and how."""

    variants: int = 4
    backgrounds: int = 8
    background_size: tuple[int, int] = (800, 640)
    # Object longer side as a fraction of the background's longer side.
    scale_range: tuple[float, float] = (0.12, 0.3)
    seed: int = GALLERY_BACKGROUND_SEED


@lru_cache(maxsize=4)
def background_scans(n: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, ...]:
    """``n`` generated parcel scans without threats (cached: galleries reuse them)."""
    from gunmatch.synth.xray import render_parcel

    return tuple(render_parcel(seed + i, size=size, threat_kind=None).image for i in range(n))


def object_patch(reference: np.ndarray, threshold: float = 0.98) -> np.ndarray:
    """The reference cropped to its object (pixels darker than ``threshold``), white if none."""
    ys, xs = np.nonzero(reference < threshold)
    if ys.size == 0:
        return np.ones((8, 8), dtype=np.float32)
    return reference[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)


def projected_variants(
    reference: np.ndarray, cfg: AugmentConfig, size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``cfg.variants`` size x size crops of the reference projected into backgrounds."""
    from gunmatch.synth.projection import random_projection

    backgrounds = background_scans(cfg.backgrounds, cfg.background_size, cfg.seed)
    patch = object_patch(np.asarray(reference, dtype=np.float32))
    screen = ScreeningConfig()
    out = []
    for _ in range(cfg.variants):
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        target = rng.uniform(*cfg.scale_range) * max(bg.shape)
        scale = float(target / max(patch.shape))
        image, box = random_projection(bg, patch, rng, scale_range=(scale, scale))
        if box is None:
            continue
        h, w = image.shape
        crop = crop_boxes(
            np.array([box.as_tuple()], dtype=np.float64),
            w,
            h,
            screen.crop_pad,
            screen.min_crop_side,
        )[0]
        out.append(crop_transmission(image, crop, size))
    return out


def xray_augmenter(
    embedder: Embedder, cfg: AugmentConfig
) -> Callable[[bytes, str], tuple[np.ndarray, list[str]]]:
    """An indexing stage: (image bytes, item name) -> variant vectors and their names."""
    pre = embedder.preprocess_config
    size = pre.input_size

    def augment(raw: bytes, name: str) -> tuple[np.ndarray, list[str]]:
        t = xray_to_transmission(load_image(raw, embedder.max_pixels), pre.xray_white_percentile)
        # Seeded by content so re-indexing the same image gives the same variants.
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(raw).digest()[:8], "little"))
        crops = projected_variants(t, cfg, size, rng)
        if not crops:
            return np.zeros((0, embedder.dim), dtype=np.float32), []
        vecs = embedder.embed_tensors(torch.stack([grey_to_tensor(c, pre) for c in crops]))
        return vecs, [f"projected{i}" for i in range(len(crops))]

    return augment
