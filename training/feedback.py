"""Training samples from a gallery's stored references and its analysts' feedback.

Feedback (index/feedback.py, ``<state_dir>/state.sqlite``; the state dir is the gallery dir
unless the service runs with ``--state DIR``): a ``correct`` verdict makes the query image a
positive of the matched item's label; a ``wrong`` verdict makes it a hard negative of that
label, and a positive of ``correct_label`` when the analyst named one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from index import Gallery, ItemNotFoundError
from index.feedback import FeedbackStore
from training.data import Sample

log = logging.getLogger(__name__)

STATE_DB = "state.sqlite"


def gallery_samples(gallery_dir: str | Path, feedback_db: str | Path | None = None) -> list[Sample]:
    """The gallery's items (stored images) plus samples made from its feedback."""
    gallery_dir = Path(gallery_dir)
    with Gallery.open(gallery_dir) as g:
        items = g.items(limit=None)
        samples = [
            Sample(g.root / it.image_file, it.label, it.modality) for it in items if it.image_file
        ]
        db = Path(feedback_db) if feedback_db else gallery_dir / STATE_DB
        if db.is_file():
            samples += feedback_samples(db, g)
    return samples


def feedback_samples(db: Path, gallery: Gallery) -> list[Sample]:
    """Positives and hard negatives from analyst verdicts stored in ``db``."""
    store = FeedbackStore(db)
    try:
        rows = store.list()
    finally:
        store.close()
    state_dir = db.parent
    out: list[Sample] = []
    for fb in rows:
        path = state_dir / fb.query_image
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
