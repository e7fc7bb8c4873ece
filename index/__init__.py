"""index: stores vectors with metadata and answers nearest-neighbour queries. Takes vectors."""

from index.categories import CATEGORIES, CATEGORY_KEYS, Category, normalize_category
from index.gallery import CALIBRATION_FILE, Gallery
from index.store import EDITABLE_FIELDS, Item
from index.types import (
    AddResult,
    Filters,
    GalleryError,
    ItemNotFoundError,
    Match,
    ModelMismatchError,
    NewItem,
    best_per_item,
)
from index.vectors import VectorIndex

__all__ = [
    "CALIBRATION_FILE",
    "CATEGORIES",
    "CATEGORY_KEYS",
    "EDITABLE_FIELDS",
    "AddResult",
    "Category",
    "Filters",
    "Gallery",
    "GalleryError",
    "Item",
    "ItemNotFoundError",
    "Match",
    "ModelMismatchError",
    "NewItem",
    "VectorIndex",
    "best_per_item",
    "normalize_category",
]
