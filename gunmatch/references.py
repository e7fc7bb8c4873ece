"""Service functions for references: compare an image with one, add one, list them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gunmatch.indexing import SourceRecord, prepare_record
from gunmatch.service import Engine
from index import Filters, Item, NewItem, normalize_category
from matcher.preprocess import check_modality

IMAGE_EXTS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Best cosine similarity between a vector and the rows of ``b`` (all unit length)."""
    b = np.atleast_2d(b)
    if b.size == 0:
        raise ValueError("nothing to compare with")
    return float(np.max(b @ np.asarray(a, dtype=np.float32).ravel()))


def item_similarity(engine: Engine, vector: np.ndarray, item_id: str) -> tuple[float, Item]:
    """Similarity of a query vector to a gallery item (best of its stored variants)."""
    item = engine.gallery.get(item_id)
    return cosine(vector, engine.gallery.item_vectors(item_id)), item


@dataclass
class ReferenceMeta:
    """Metadata an analyst gives a new reference."""

    label: str
    category: str = "other"
    threat: bool = False
    make_model: str = ""
    calibre: str = ""
    notes: str = ""
    modality: str | None = None
    source: str = "upload"


def add_reference(
    engine: Engine, data: bytes, meta: ReferenceMeta, added_by: str, filename: str = "upload"
) -> tuple[str, bool]:
    """Decode, embed and add one image; returns (item_id, added) — False if already present."""
    if not meta.label.strip():
        raise ValueError("a reference needs a non-empty label")
    modality = check_modality(meta.modality or engine.gallery.modality)
    record = SourceRecord(
        path=Path(filename or "upload"),
        label=meta.label.strip(),
        category=normalize_category(meta.category),
        threat=meta.threat,
        make_model=meta.make_model,
        calibre=meta.calibre,
        notes=meta.notes,
        modality=modality,
    )
    prepared = prepare_record(record, engine.embedder, raw=data)
    vectors = engine.embedder.embed_tensors(prepared.tensor[None])
    fmt = _format_of(data)
    result = engine.gallery.add(
        [
            NewItem(
                vectors=vectors,
                label=record.label,
                image_bytes=data,
                image_ext=IMAGE_EXTS.get(fmt, ".img"),
                thumb_bytes=prepared.thumb,
                category=record.category,
                modality=modality,
                threat=record.threat,
                make_model=record.make_model,
                calibre=record.calibre,
                notes=record.notes,
                source=meta.source,
                added_by=added_by,
                width=prepared.size[0],
                height=prepared.size[1],
            )
        ],
        engine.embedder.model_id,
    )
    if result.added:
        return result.added[0], True
    return result.skipped[0][1], False


def _format_of(data: bytes) -> str:
    """PIL format name from the magic bytes (no decode)."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return ""


def image_ext(data: bytes) -> str:
    """A file extension for image bytes (``.img`` when unknown)."""
    return IMAGE_EXTS.get(_format_of(data), ".img")


def list_items(
    engine: Engine, filters: Filters | None, limit: int, offset: int
) -> tuple[int, list[Item]]:
    """A page of gallery items and the total matching the filters."""
    where, params = (filters or Filters()).sql()
    total = engine.gallery.store.count_items(where.replace("i.", ""), params)
    return total, engine.gallery.items(filters, limit, offset)
