"""Models the project trains on its own generated data and ships in the repository (models/).

Each is a directory with its card (training command, seeds, generator version, data hash,
validation metrics): ``threatmap-v6`` (the X-ray threat map: the heads of ``threatmap-v1``,
``threatmap-v3`` and a head fine-tuned on dense clutter, their logits weighted 0.4, 0.3 and
0.3; the trunk is the bundled ImageNet Lite0) and ``xray-v1`` (the
X-ray retrieval model, stored as its difference from the bundled trunk). A new X-ray gallery
uses them by default.
"""

from __future__ import annotations

import json
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
THREATMAP = "threatmap-v6"
XRAY_MODEL = "xray-v1"


def shipped(name: str, root: Path = MODELS_DIR) -> Path | None:
    """The directory of a shipped model, or None when this install does not have it."""
    path = root / name
    return path if path.is_dir() and any(path.iterdir()) else None


def default_threatmap(root: Path = MODELS_DIR) -> Path | None:
    """The threat map a new X-ray gallery gets."""
    return shipped(THREATMAP, root)


def default_xray_model(root: Path = MODELS_DIR) -> Path | None:
    """The retrieval model a new X-ray gallery is built with (None: the ImageNet backbone)."""
    return shipped(XRAY_MODEL, root)


def list_shipped(root: Path = MODELS_DIR) -> list[dict]:
    """Name, kind, path and card of every shipped model."""
    out = []
    for path in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        card_file = path / "card.json"
        card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
        kind = card.get("kind", "")
        out.append({"name": path.name, "kind": kind, "path": str(path), "card": card})
    return out
