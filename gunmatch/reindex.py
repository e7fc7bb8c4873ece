"""Re-embed a gallery's stored images with another model: a shadow gallery, then a swap."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from gunmatch.service import threatmap_dir
from index import Gallery, NewItem
from matcher import Embedder, load_model, save_checkpoint


def build_shadow(
    source: Gallery, embedder: Embedder, shadow_dir: Path, progress: bool = True
) -> Gallery:
    """A new gallery at ``shadow_dir`` holding ``source``'s items embedded by ``embedder``."""
    if shadow_dir.exists():
        shutil.rmtree(shadow_dir)
    shadow = Gallery.create(shadow_dir, embedder.model_id, embedder.dim, source.modality)
    save_checkpoint(embedder.model, shadow.model_dir)
    tmap = threatmap_dir(source)
    if tmap.is_dir():  # the threat map does not depend on the embedding model: keep it
        shutil.copytree(tmap, threatmap_dir(shadow))
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


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where that is unsupported."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(shadow_dir: Path, target: Path) -> None:
    """Replace ``target`` by ``shadow_dir``.

    One atomic exchange where the kernel and file system allow it, so a reader never finds
    the path missing; otherwise two renames with the old gallery kept until the second is done.
    """
    if exchange(shadow_dir, target):
        shutil.rmtree(shadow_dir, ignore_errors=True)  # now holds the old gallery
        return
    backup = target.with_name(f"{target.name}.old-{int(time.time())}")
    os.replace(target, backup)
    try:
        os.replace(shadow_dir, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def reindex(
    gallery_dir: Path,
    model: str | Path,
    threads: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Re-embed every item of ``gallery_dir`` with ``model`` and switch the gallery over."""
    gallery_dir = Path(gallery_dir)
    embedder = Embedder(load_model(model), batch_size=batch_size, threads=threads)
    shadow_dir = gallery_dir.with_name(f".{gallery_dir.name}.reindex")
    with Gallery.open(gallery_dir) as source:
        shadow = build_shadow(source, embedder, shadow_dir, progress)
        count = len(shadow)
        shadow.close()
    swap_in(shadow_dir, gallery_dir)
    return {"items": count, "model_id": embedder.model_id}
