"""index: stores vectors with metadata and answers nearest-neighbour queries. Takes vectors."""

from index.categories import CATEGORIES, CATEGORY_KEYS, Category, normalize_category
from index.gallery import Gallery
from index.store import EDITABLE_FIELDS, Item
from index.types import (
    AddResult,
    Filters,
    GalleryError,
    ItemNotFoundError,
    Match,
    ModelMismatchError,
    NewItem,
)
from index.vectors import VectorIndex

__all__ = [
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
    "normalize_category",
]
