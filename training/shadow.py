"""Re-embed a gallery's stored images with another model into a shadow gallery beside it.

Promotion, rollback and ``gunmatch gallery reindex`` build the shadow here, then switch the
directories with ``index.files.swap_in``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tqdm import tqdm

from index import Gallery, NewItem
from matcher import Embedder, save_checkpoint


def build_shadow(
    source: Gallery, embedder: Embedder, shadow_dir: Path, progress: bool = True
) -> Gallery:
    """A new gallery at ``shadow_dir`` holding ``source``'s items embedded by ``embedder``."""
    if shadow_dir.exists():
        shutil.rmtree(shadow_dir)
    shadow = Gallery.create(shadow_dir, embedder.model_id, embedder.dim, source.modality)
    save_checkpoint(embedder.model, shadow.model_dir)
    if source.threatmap_dir.is_dir():  # the map does not depend on the embedding model: keep it
        shutil.copytree(source.threatmap_dir, shadow.threatmap_dir)
    items = source.items()
    batch = embedder.batch_size
    bar = tqdm(total=len(items), unit="img", desc="re-embedding", disable=not progress or None)
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        raws = [(source.root / it.image_file).read_bytes() for it in chunk]
        modality = chunk[0].modality
        same = all(it.modality == modality for it in chunk)
        if same:
            vecs = embedder.embed(raws, modality)
        else:
            vecs = [embedder.embed([r], it.modality)[0] for r, it in zip(raws, chunk, strict=True)]
        new = []
        for it, raw, vec in zip(chunk, raws, vecs, strict=True):
            thumb = (source.root / it.thumb_file).read_bytes() if it.thumb_file else b""
            new.append(
                NewItem(
                    vectors=vec[None, :],
                    label=it.label,
                    image_bytes=raw,
                    image_ext=Path(it.image_file).suffix,
                    thumb_bytes=thumb,
                    category=it.category,
                    modality=it.modality,
                    threat=it.threat,
                    make_model=it.make_model,
                    calibre=it.calibre,
                    source=it.source,
                    notes=it.notes,
                    added_by=it.added_by,
                    width=it.width,
                    height=it.height,
                )
            )
        shadow.add(new, embedder.model_id)
        bar.update(len(chunk))
    bar.close()
    shadow.flush()
    return shadow
