"""The gallery's value types: items to add, search hits, filters, and its errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from index.categories import normalize_category
from index.store import Item


class GalleryError(RuntimeError):
    """A gallery cannot be opened or written as asked; the message says why."""


class ModelMismatchError(GalleryError):
    """Vectors or an embedder from another model than the one that built the gallery."""


class ItemNotFoundError(GalleryError, KeyError):
    """No item with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "item not found"


@dataclass
class NewItem:
    """A reference to add: its vectors (original first, then variants) and metadata."""

    vectors: np.ndarray
    label: str
    image_bytes: bytes
    image_ext: str = ".png"
    thumb_bytes: bytes = b""
    category: str = "other"
    modality: str = "photo"
    threat: bool = False
    make_model: str = ""
    calibre: str = ""
    source: str = ""
    notes: str = ""
    added_by: str = ""
    width: int = 0
    height: int = 0
    variants: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """Hash of the original image bytes."""
        return hashlib.sha256(self.image_bytes).hexdigest()


@dataclass
class AddResult:
    """Which items were added and which were already present (same image sha256)."""

    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, existing item_id)


@dataclass
class Match:
    """One search hit: an item and its cosine similarity to the query."""

    rank: int
    item: Item
    score: float
    variant: str = "original"

    def to_dict(self) -> dict:
        """The public shape of one match (CLI JSON and API)."""
        it = self.item
        return {
            "rank": self.rank,
            "item_id": it.item_id,
            "label": it.label,
            "category": it.category,
            "make_model": it.make_model,
            "calibre": it.calibre,
            "threat": it.threat,
            "score": round(float(self.score), 4),
        }


def best_per_item(matches: Iterable[Match], k: int) -> list[Match]:
    """Each item's best match, best first (ties by item id), top ``k``, ranks renumbered."""
    best: dict[str, Match] = {}
    for m in matches:
        seen = best.get(m.item.item_id)
        if seen is None or m.score > seen.score:
            best[m.item.item_id] = m
    ordered = sorted(best.values(), key=lambda m: (-m.score, m.item.item_id))[:k]
    return [replace(m, rank=i + 1) for i, m in enumerate(ordered)]


@dataclass
class Filters:
    """Optional search filters."""

    category: str | None = None
    modality: str | None = None
    threat: bool | None = None
    label: str | None = None

    def sql(self) -> tuple[str, list]:
        """A WHERE fragment over the items table (alias i) and its parameters."""
        parts, params = [], []
        if self.category:
            parts.append("i.category=?")
            params.append(normalize_category(self.category))
        if self.modality:
            parts.append("i.modality=?")
            params.append(self.modality)
        if self.threat is not None:
            parts.append("i.threat=?")
            params.append(int(self.threat))
        if self.label:
            parts.append("i.label=?")
            params.append(self.label)
        return " AND ".join(parts), params
