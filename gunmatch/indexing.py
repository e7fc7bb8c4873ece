"""Gallery building as reader -> embedder -> writer, each stage passed in.

The reader turns a folder into records, the embedder turns decoded images into vectors and
the writer adds them to a gallery in batches (each batch one atomic add).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from index import Gallery, NewItem, normalize_category
from matcher import Embedder, ImageError, load_image
from matcher.images import is_image_path
from matcher.preprocess import photo_to_rgb, preprocess, xray_to_transmission

log = logging.getLogger(__name__)
THUMB_SIZE = 256


@dataclass
class SourceRecord:
    """One image file to index, with its metadata."""

    path: Path
    label: str
    category: str = "other"
    threat: bool = False
    make_model: str = ""
    calibre: str = ""
    notes: str = ""
    modality: str = "photo"


@dataclass
class BuildReport:
    """What a build did."""

    added: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0


def _truthy(value: str) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "y", "threat", "是"}


def read_metadata_csv(path: Path) -> dict[str, dict[str, str]]:
    """CSV with a ``file`` column (name or path relative to SRC) -> per-file metadata."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise ValueError(f"{path}: the metadata CSV needs a 'file' column")
        return {
            row["file"].strip(): {k: (v or "").strip() for k, v in row.items()} for row in reader
        }


def scan_source(
    src: Path,
    modality: str = "photo",
    metadata: dict[str, dict[str, str]] | None = None,
    threat_labels: Iterable[str] = (),
) -> list[SourceRecord]:
    """Read ``SRC/<label>/**/<image>`` into records (label = first folder name)."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory")
    metadata = metadata or {}
    threats = {t.strip() for t in threat_labels if t.strip()}
    records = []
    for path in sorted(p for p in src.rglob("*") if p.is_file() and is_image_path(p)):
        rel = path.relative_to(src)
        if len(rel.parts) < 2:
            log.warning("skipping %s: images must sit in a SRC/<label>/ folder", path)
            continue
        meta = metadata.get(str(rel)) or metadata.get(path.name) or {}
        label = meta.get("label") or rel.parts[0]
        threat = _truthy(meta["threat"]) if meta.get("threat") else label in threats
        records.append(
            SourceRecord(
                path=path,
                label=label,
                category=normalize_category(meta.get("category") or None),
                threat=threat,
                make_model=meta.get("make_model", ""),
                calibre=meta.get("calibre", ""),
                notes=meta.get("notes", ""),
                modality=meta.get("modality") or modality,
            )
        )
    return records


def make_thumbnail(img: Image.Image, modality: str, size: int = THUMB_SIZE) -> bytes:
    """A JPEG thumbnail that shows an X-ray as grey transmission and a photo upright."""
    if modality == "xray":
        grey = xray_to_transmission(img)
        thumb = Image.fromarray((grey * 255.0 + 0.5).astype(np.uint8), "L")
    else:
        thumb = photo_to_rgb(img)
    thumb.thumbnail((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


@dataclass
class Prepared:
    """A decoded record: its model input, thumbnail and raw bytes."""

    record: SourceRecord
    tensor: torch.Tensor
    raw: bytes
    thumb: bytes
    size: tuple[int, int]


def prepare_record(record: SourceRecord, embedder: Embedder, raw: bytes | None = None) -> Prepared:
    """Read, decode and preprocess one file (runs in a worker thread)."""
    raw = record.path.read_bytes() if raw is None else raw
    img = load_image(raw, embedder.max_pixels)
    tensor = preprocess(img, record.modality, embedder.preprocess_config)  # type: ignore[arg-type]
    return Prepared(record, tensor, raw, make_thumbnail(img, record.modality), img.size)


def _prepared_stream(
    records: Sequence[SourceRecord],
    embedder: Embedder,
    report: BuildReport,
    workers: int,
    known_shas: set[str],
) -> Iterator[Prepared | None]:
    """Decode ahead of the model in a thread pool; failures are reported, not raised.

    Images already in the gallery (same sha256) are not decoded again: None is yielded.
    """

    def safe(rec: SourceRecord) -> Prepared | tuple[SourceRecord, str] | None:
        try:
            raw = rec.path.read_bytes()
            if hashlib.sha256(raw).hexdigest() in known_shas:
                return None
            return prepare_record(rec, embedder, raw)
        except (ImageError, OSError, ValueError) as exc:
            return rec, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for out in pool.map(safe, records):
            if out is None or isinstance(out, Prepared):
                yield out
            else:
                report.failed.append((str(out[0].path), out[1]))


Writer = Callable[[list[NewItem]], tuple[int, int]]


def gallery_writer(gallery: Gallery, model_id: str, added_by: str = "") -> Writer:
    """A writer stage that adds a batch to ``gallery`` and returns (added, skipped)."""

    def write(items: list[NewItem]) -> tuple[int, int]:
        for it in items:
            it.added_by = added_by
        result = gallery.add(items, model_id)
        return len(result.added), len(result.skipped)

    return write


def build(
    records: Sequence[SourceRecord],
    embedder: Embedder,
    writer: Writer,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    embed_fn: Callable[[torch.Tensor], np.ndarray] | None = None,
    known_shas: set[str] | None = None,
    augment_fn: Callable[[bytes, str], tuple[np.ndarray, list[str]]] | None = None,
) -> BuildReport:
    """Run reader -> embedder -> writer over ``records`` with a progress bar.

    ``augment_fn`` (optional, X-ray records only) returns extra variant vectors of an image,
    stored as further rows of the same item (see ``screening.augment``).
    """
    report = BuildReport(total=len(records))
    embed_fn = embed_fn or embedder.embed_tensors
    bar = tqdm(total=len(records), unit="img", desc="indexing", disable=not progress or None)
    batch: list[Prepared] = []

    def flush() -> None:
        vecs = embed_fn(torch.stack([p.tensor for p in batch]))
        extra = [
            augment_fn(p.raw, str(p.record.path))
            if augment_fn is not None and p.record.modality == "xray"
            else (np.zeros((0, vecs.shape[1]), dtype=np.float32), [])
            for p in batch
        ]
        items = [
            NewItem(
                vectors=np.concatenate([vec[None, :], ex[0]]),
                variants=list(ex[1]),
                label=p.record.label,
                image_bytes=p.raw,
                image_ext=p.record.path.suffix or ".png",
                thumb_bytes=p.thumb,
                category=p.record.category,
                modality=p.record.modality,
                threat=p.record.threat,
                make_model=p.record.make_model,
                calibre=p.record.calibre,
                notes=p.record.notes,
                source=str(p.record.path),
                width=p.size[0],
                height=p.size[1],
            )
            for p, vec, ex in zip(batch, vecs, extra, strict=True)
        ]
        added, skipped = writer(items)
        report.added += added
        report.skipped += skipped
        bar.update(len(batch))
        batch.clear()

    for prepared in _prepared_stream(records, embedder, report, workers, known_shas or set()):
        if prepared is None:
            report.skipped += 1
            bar.update(1)
            continue
        batch.append(prepared)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    bar.update(len(report.failed))
    bar.close()
    return report
