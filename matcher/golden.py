"""Golden values for the bundled weights: a fixed generated image and what the model says.

``python -m matcher.golden --write tests/matcher/golden/golden.json`` regenerates the file that
tests/test_golden.py checks against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from matcher.backbones import list_backbones
from matcher.model import build_pretrained
from matcher.preprocess import preprocess

CROSSWORD_PUZZLE = 918  # the ImageNet class both bundled models give the checkerboard


def golden_image(size: int = 160) -> Image.Image:
    """A deterministic 8x8 black-and-white checkerboard (ImageNet: "crossword puzzle")."""
    y, x = np.mgrid[0:size, 0:size] * 8 // size
    board = ((x + y) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([board] * 3, axis=-1), "RGB")


def golden_values(backbone: str) -> dict:
    """Top ImageNet classes and a few embedding values for the golden image."""
    model = build_pretrained(backbone)
    x = preprocess(golden_image(), "photo", model.config.preprocess)[None]
    with torch.inference_mode():
        fmap = model.backbone.features(x)
        logits = model.backbone.classify(fmap)[0]
        emb = model(x)[0]
    top = torch.topk(logits, 3)
    # The largest embedding components carry the signal; zeros would test nothing.
    strongest = sorted(int(i) for i in torch.topk(emb, 6).indices)
    return {
        "model_id": model.model_id,
        "top_classes": [int(i) for i in top.indices],
        "top_logits": [round(float(v), 4) for v in top.values],
        "embedding_indices": strongest,
        "embedding_values": [round(float(emb[i]), 6) for i in strongest],
        "embedding": emb.tolist(),
    }


def main() -> None:
    """Regenerate the golden file."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = {}
    for name in list_backbones():
        values = golden_values(name)
        values.pop("embedding")
        data[name] = values
    args.write.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
