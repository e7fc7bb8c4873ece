"""Shared fixtures: one pretrained model per session, tiny generated image sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


def shape_image(label: str, seed: int, size: int = 96) -> Image.Image:
    """A small drawing whose shape depends on the label and details on the seed."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(200, 255, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    fg = tuple(int(v) for v in rng.integers(0, 80, 3))
    j = lambda: int(rng.integers(-6, 7))  # noqa: E731
    if label == "barrel":
        d.rectangle([8 + j(), 40 + j(), 88 + j(), 54 + j()], fill=fg)
        d.rectangle([8, 45, 88, 49], fill=bg)
    elif label == "magazine":
        d.rectangle([36 + j(), 10 + j(), 60 + j(), 86 + j()], fill=fg)
    elif label == "spring":
        for x in range(10, 86, 8):
            d.line([x, 30 + j(), x + 4, 66 + j()], fill=fg, width=3)
    else:
        d.ellipse([20 + j(), 20 + j(), 76 + j(), 76 + j()], outline=fg, width=6)
    return img


def write_image_tree(root: Path, labels: list[str], per_label: int, seed: int = 0) -> Path:
    """root/<label>/<label>_<i>.png with generated drawings."""
    for li, label in enumerate(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            shape_image(label, seed * 1000 + li * 100 + i).save(root / label / f"{label}_{i}.png")
    return root


@pytest.fixture(scope="session")
def lite0():
    """The bundled ImageNet efficientnet_lite0 model (loaded once)."""
    from matcher import build_pretrained

    return build_pretrained("efficientnet_lite0")


@pytest.fixture(scope="session")
def embedder(lite0):
    """An Embedder on the bundled default model."""
    from matcher import Embedder

    return Embedder(lite0, batch_size=16, threads=2)


@pytest.fixture()
def image_tree(tmp_path: Path) -> Path:
    """A small labelled folder of generated images."""
    return write_image_tree(tmp_path / "src", ["barrel", "magazine", "spring"], 4)
