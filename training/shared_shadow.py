"""A shared gallery's shadow: the candidate's vectors beside the live ones in its PostgreSQL
schema and in a new Milvus collection (``index.shadow``), switched in without a copy.

Keys, sessions, feedback and the audit chain stay where they are (the same schema), and so do
the items and their images: only the vectors, the collection replicas search, the model
directory, the calibration and the manifest change. The bulk re-embedding runs with the live
gallery serving and taking writes; ``switch`` then catches up on what replicas changed
meanwhile (once freely, once more under the gallery's write lock, where nothing can change)
and switches. Telling the replicas to reload is the application's part (``gunmatch``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from index import CALIBRATION_FILE, Gallery
from index.consistency import LIVE_MODEL
from index.shadow import SharedShadow, switch_files
from matcher import Embedder, save_checkpoint
from training.evaluate import EmbeddedSet, Evaluation, evaluate_rows
from training.shadow import embedded_batches


class PgShadow:
    """The shadow of a shared gallery; ``build`` makes one."""

    def __init__(
        self, gallery_dir: Path, source: Gallery, embedder: Embedder, inner: SharedShadow
    ) -> None:
        self.gallery_dir, self.source, self.embedder, self.inner = (
            gallery_dir, source, embedder, inner
        )  # fmt: skip
        # Beside the files it replaces (same file system, so they are renamed into place).
        self.staging = gallery_dir / f".switch-{embedder.model_id[:24]}"
        self.items = 0
        self.embedded = 0

    @classmethod
    def build(
        cls, gallery_dir: Path, embedder: Embedder, tag: str, progress: bool = True
    ) -> PgShadow:
        """Embed every item the candidate has no vector for (a rollback's kept vectors are
        reused) into the shadow; the live gallery keeps serving meanwhile."""
        source = Gallery.open(gallery_dir)
        try:
            inner = SharedShadow.begin(source, embedder.model_id, embedder.dim)
        except BaseException:
            source.close()
            raise
        shadow = cls(gallery_dir, source, embedder, inner)
        try:
            if shadow.staging.exists():
                shutil.rmtree(shadow.staging)
            shadow.staging.mkdir(mode=0o700)
            shadow.fill(progress)
            shadow.items = len(source)
        except BaseException:
            shadow.discard()
            raise
        return shadow

    def fill(self, progress: bool = False) -> int:
        """Embed the items that have no candidate vector yet; returns how many."""
        pending = self.inner.pending()
        ids = {it.item_id: vid for vid, it in pending}
        items = [it for _, it in pending]
        for chunk, _, vecs in embedded_batches(self.source, items, self.embedder, progress):
            self.inner.put([ids[it.item_id] for it in chunk], vecs)
        self.embedded += len(items)
        return len(items)

    def catch_up(self) -> dict:
        """Bring the shadow up to the live gallery: embed what was added, drop what was
        removed, rewrite what was edited since the last catch-up."""
        added = self.fill()
        return {"added": added, **self.inner.refresh()}

    @property
    def calibration_file(self) -> Path:
        """Where the candidate's calibration goes before the switch (none: no calibration)."""
        return self.staging / CALIBRATION_FILE

    def evaluate(
        self, queries: Path, embedder: Embedder, threats: list[str], progress: bool
    ) -> Evaluation:
        """The candidate's metrics on the fixed query set, from its shadow vectors."""
        items, vectors = self.inner.rows()
        gset = EmbeddedSet(vectors, [it.label for it in items], [it.item_id for it in items])
        owner = np.arange(len(items), dtype=np.int64)
        src = f"{self.gallery_dir} (shadow {self.inner.collection})"
        return evaluate_rows(gset, owner, queries, embedder, threats, progress=progress, source=src)

    def switch(self) -> dict:
        """Catch up, then under the write lock catch up again and switch the database, the
        collection and the files together; what changed. Fails before the database switched:
        the shadow is discarded and nothing live changed."""
        model_dir = self.staging / "model"
        try:
            save_checkpoint(self.embedder.model, model_dir)
            if self.source.threatmap_dir.is_dir():  # independent of the embedding model
                tmap = self.source.threatmap_dir
                shutil.copytree(tmap, model_dir / tmap.name)
            first = self.catch_up()
            manifest = self.inner.manifest()
            cal = self.calibration_file if self.calibration_file.is_file() else None
            with self.source.store.write_lock():
                last = self.catch_up()
                generation = self.inner.commit()
                # Past the commit the shadow is live: never discarded from here on.
                switch_files(self.gallery_dir, manifest, model_dir, cal)
        except BaseException:
            if self.source is not None and self.source.store.get_meta(LIVE_MODEL) != (
                self.embedder.model_id
            ):
                self.discard()
            raise
        record = {
            "collection": self.inner.collection,
            "retired_collection": self.source.backend_spec.collection,
            "embedded": self.embedded,
            "caught_up": {k: first[k] + last[k] for k in first},
            "store_generation": generation,
        }
        self.close()
        return record

    def discard(self) -> None:
        """Drop the shadow's collection and vectors; nothing live changes."""
        try:
            self.inner.discard()
        finally:
            self.close()

    def close(self) -> None:
        """Remove the staging directory, release connections (idempotent)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.source is not None:
            self.inner.close()
            self.source.close()
            self.source = None
