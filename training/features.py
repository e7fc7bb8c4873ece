"""Cache the frozen part's outputs: one clean view and N augmented views per image.

The frozen stem and early blocks cost most of a forward pass on a CPU; computing them once
per augmentation pass (instead of once per epoch) is what keeps fine-tuning within minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from matcher.model import EmbeddingModel
from matcher.preprocess import preprocess
from training.augment import AugmentConfig, augment
from training.trunk import frozen_forward


def frozen_batch(model: EmbeddingModel, x: torch.Tensor, freeze_blocks: int) -> torch.Tensor:
    """(n, C, H, W) float16 frozen-trunk output of one preprocessed batch."""
    with torch.inference_mode():
        y = frozen_forward(model, x.contiguous(memory_format=torch.channels_last), freeze_blocks)
    return y.half().contiguous()


def frozen_features(
    model: EmbeddingModel,
    images: Sequence[Image.Image],
    modalities: Sequence[str],
    freeze_blocks: int,
    rng: np.random.Generator | None = None,
    aug: AugmentConfig | None = None,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(n, C, H, W) float16 frozen-trunk outputs; augmented when ``rng`` is given."""
    cfg = model.config.preprocess
    aug = aug or AugmentConfig()
    out = []
    for i in range(0, len(images), batch_size):
        chunk = list(zip(images[i : i + batch_size], modalities[i : i + batch_size], strict=True))
        if rng is not None:
            chunk = [(augment(im, mod, rng, aug), mod) for im, mod in chunk]
        x = torch.stack([preprocess(im, mod, cfg) for im, mod in chunk])
        out.append(frozen_batch(model, x, freeze_blocks))
        if on_batch:
            on_batch(len(chunk))
    return torch.cat(out)


def cache_views(
    model: EmbeddingModel,
    images: Sequence[Image.Image],
    modalities: Sequence[str],
    freeze_blocks: int,
    passes: int,
    seed: int,
    aug: AugmentConfig | None = None,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(1 + passes, n, C, H, W): view 0 is clean, the others augmented with seeds from ``seed``."""
    model.eval()
    views = [
        frozen_features(model, images, modalities, freeze_blocks, None, aug, batch_size, on_batch)
    ]
    for p in range(passes):
        rng = np.random.default_rng([seed, p])
        views.append(
            frozen_features(
                model, images, modalities, freeze_blocks, rng, aug, batch_size, on_batch
            )
        )
    return torch.stack(views)
