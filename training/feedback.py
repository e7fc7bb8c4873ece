"""Training samples from a gallery's stored references and its analysts' feedback.

A ``correct`` verdict makes the query image a positive of the matched item's label; a
``wrong`` verdict makes it a hard negative of that label, and a positive of ``correct_label``
when the analyst named one.

Where the feedback lives is the application's business (``gunmatch.feedback``: a shared
gallery keeps it in PostgreSQL, an embedded one in ``<state_dir>/state.sqlite``): it hands the
rows down as a ``FeedbackSet`` with the directory their ``query_image`` paths are relative to.
Without one, ``gallery_samples`` reads ``feedback_db`` or ``<gallery>/state.sqlite``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from index import Gallery, ItemNotFoundError
from index.feedback import Feedback, FeedbackStore
from training.data import Sample

log = logging.getLogger(__name__)

STATE_DB = "state.sqlite"


@dataclass(frozen=True)
class FeedbackSet:
    """Analyst feedback rows and the directory holding their query images."""

    rows: list[Feedback]
    image_dir: Path


def read_feedback_db(db: str | Path) -> FeedbackSet:
    """The feedback in a state SQLite file; its images lie beside it."""
    db = Path(db)
    store = FeedbackStore(db)
    try:
        return FeedbackSet(store.list(), db.parent)
    finally:
        store.close()


def gallery_samples(
    gallery_dir: str | Path,
    feedback_db: str | Path | None = None,
    feedback: FeedbackSet | None = None,
) -> list[Sample]:
    """The gallery's items (stored images) plus samples made from ``feedback`` (else from
    the SQLite file ``feedback_db``, default ``<gallery>/state.sqlite`` when present)."""
    gallery_dir = Path(gallery_dir)
    if feedback is None:
        db = Path(feedback_db) if feedback_db else gallery_dir / STATE_DB
        feedback = read_feedback_db(db) if db.is_file() else None
    with Gallery.open(gallery_dir) as g:
        items = g.items(limit=None)
        samples = [
            Sample(g.root / it.image_file, it.label, it.modality) for it in items if it.image_file
        ]
        if feedback is not None:
            samples += feedback_samples(feedback, g)
    return samples


def feedback_samples(feedback: FeedbackSet, gallery: Gallery) -> list[Sample]:
    """Positives and hard negatives from analyst verdicts."""
    out: list[Sample] = []
    for fb in feedback.rows:
        path = feedback.image_dir / fb.query_image
        if not fb.query_image or not path.is_file():
            log.warning("feedback %s: query image %s is missing; skipped", fb.id, path)
            continue
        try:
            item = gallery.get(fb.item_id)
        except ItemNotFoundError:
            log.warning("feedback %s: item %s no longer in the gallery; skipped", fb.id, fb.item_id)
            continue
        if fb.verdict == "correct":
            out.append(Sample(path, item.label, item.modality))
        elif fb.correct_label and fb.correct_label != item.label:
            out.append(Sample(path, fb.correct_label, item.modality, negatives=[item.label]))
        elif not fb.correct_label:
            out.append(Sample(path, "", item.modality, negatives=[item.label]))
    return out
