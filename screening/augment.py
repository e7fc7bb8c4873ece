"""Gallery augmentation for X-ray references: projected variants inside cluttered scans.

An isolated reference (one part on an empty belt) is multiplied into generated background
scans (transmissions multiply) at a random scale, angle and position, then cropped the way
``screening.screen`` crops a proposal. The crops' vectors are stored as extra rows of the
same gallery item (``NewItem.vectors`` after the first, named by ``NewItem.variants``), so a
cluttered query can meet a cluttered version of its reference; search keeps the best one.

Backgrounds are rendered from a fixed seed range reserved for galleries, never used by the
benchmark's evaluation parcels.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from index import NewItem
from matcher.embedder import Embedder
from matcher.images import load_image
from matcher.preprocess import grey_to_tensor, xray_to_transmission
from screening.regions import propose_regions
from screening.screen import ScreeningConfig, crop_boxes, crop_transmission
from synth.projection import random_projection
from synth.xray import render_parcel

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


def clutter_crops(
    t: np.ndarray, per_scan: int, size: int, screen: ScreeningConfig | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(box, crop) of the ``per_scan`` best proposals of a scan, the whole-scan box left out.

    Cropped exactly as screening crops, so a cleared parcel's cables and batteries become
    references that the margin score (``ScreeningConfig.score_mode``) can discount.
    """
    screen = screen or ScreeningConfig()
    extra = 1 if screen.proposals.include_full else 0
    boxes, _ = propose_regions(t, replace(screen.proposals, max_regions=per_scan + extra))
    boxes = boxes[extra:]
    h, w = t.shape
    wins = crop_boxes(boxes, w, h, screen.crop_pad, screen.min_crop_side)
    return [(b, crop_transmission(t, win, size)) for b, win in zip(boxes, wins, strict=True)]


def clutter_items(
    embedder: Embedder, t: np.ndarray, per_scan: int, source: str, added_by: str = ""
) -> list[NewItem]:
    """Benign "clutter" references from a scan known to hold no threat (a cleared parcel)."""
    pre = embedder.preprocess_config
    crops = clutter_crops(t, per_scan, pre.input_size)
    if not crops:
        return []
    vecs = embedder.embed_tensors(torch.stack([grey_to_tensor(c, pre) for _, c in crops]))
    items = []
    for (box, crop), vec in zip(crops, vecs, strict=True):
        buf = io.BytesIO()
        Image.fromarray((np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
        items.append(
            NewItem(
                vectors=vec[None, :],
                label="clutter",
                image_bytes=buf.getvalue(),
                category="benign",
                modality="xray",
                threat=False,
                source=f"{source} box {[int(v) for v in box]}",
                notes="region of a cleared parcel (gallery add-clutter)",
                added_by=added_by,
                width=crop.shape[1],
                height=crop.shape[0],
            )
        )
    return items
