"""Gallery: add/remove/update/persist/reopen, filters, atomicity under a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from index import Filters, Gallery, GalleryError, ItemNotFoundError, ModelMismatchError, NewItem

DIM = 16


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def items(n: int, seed: int | None = None, start: int = 0) -> list[NewItem]:
    rng = np.random.default_rng(start if seed is None else seed)
    return [
        NewItem(
            vectors=unit(rng),
            label=f"label{i % 3}",
            image_bytes=f"image-{i}".encode(),
            category=["barrel", "slide", "magazine"][i % 3],
            threat=i % 2 == 0,
            modality="photo" if i % 4 else "xray",
            source=f"src/{i}.png",
        )
        for i in range(start, start + n)
    ]


@pytest.fixture()
def gallery(tmp_path: Path, backends) -> Gallery:
    g = Gallery.create(tmp_path / "g", "model-a", DIM, **backends)
    yield g
    g.close()


def test_add_search_finds_itself(gallery):
    new = items(12)
    res = gallery.add(new, "model-a")
    assert len(res.added) == 12 and not res.skipped
    hits = gallery.search(new[5].vectors, k=3)[0]
    assert hits[0].item.source == "src/5.png"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_readding_same_image_is_a_noop_that_says_so(gallery):
    first = gallery.add(items(4), "model-a")
    again = gallery.add(items(4, seed=9), "model-a")  # same bytes, other vectors
    assert not again.added
    assert [s[1] for s in again.skipped] == first.added
    assert len(gallery) == 4 and gallery.index.ntotal == 4


def test_filters(gallery):
    gallery.add(items(12), "model-a")
    q = unit(np.random.default_rng(42))
    for f, check in [
        (Filters(category="slide"), lambda it: it.category == "slide"),
        (Filters(threat=True), lambda it: it.threat),
        (Filters(modality="xray"), lambda it: it.modality == "xray"),
        (
            Filters(category="barrel", threat=False),
            lambda it: it.category == "barrel" and not it.threat,
        ),
    ]:
        hits = gallery.search(q, k=20, filters=f)[0]
        expected = [it for it in gallery.items() if check(it)]
        assert len(hits) == len(expected) > 0
        assert all(check(h.item) for h in hits)
    assert gallery.search(q, k=5, filters=Filters(category="cylinder"))[0] == []


def test_remove_update_persist_reopen(tmp_path, gallery):
    res = gallery.add(items(6), "model-a")
    gallery.remove(res.added[:2])
    updated = gallery.update(
        res.added[2], label="glock-17", category="frame", threat=True, notes="seized 2026"
    )
    assert (updated.label, updated.category, updated.threat) == ("glock-17", "frame", True)
    with pytest.raises(ItemNotFoundError):
        gallery.remove(["does-not-exist"])
    with pytest.raises(ValueError, match="category"):
        gallery.update(res.added[3], category="laser")
    gallery.close()

    g = Gallery.open(tmp_path / "g")
    assert len(g) == 4 and g.index.ntotal == 4
    assert g.get(res.added[2]).notes == "seized 2026"
    with pytest.raises(ItemNotFoundError):
        g.get(res.added[0])
    found = {m.item.item_id for m in g.search(unit(np.random.default_rng(1)), k=10)[0]}
    assert found == set(res.added[2:])
    assert (g.root / g.get(res.added[3]).image_file).read_bytes() == b"image-3"
    g.close()


def test_model_mismatch_refused(tmp_path, gallery):
    gallery.add(items(2), "model-a")
    with pytest.raises(ModelMismatchError, match="model-a"):
        gallery.add(items(2, start=5), "model-b")
    gallery.close()
    with pytest.raises(ModelMismatchError, match="re-index"):
        Gallery.open(tmp_path / "g", model_id="model-b")
    with pytest.raises(ModelMismatchError, match="dimension"):
        Gallery.open(tmp_path / "g").search(np.ones((1, DIM + 1), np.float32))


def test_bad_vectors_rejected_and_nothing_written(gallery):
    bad = items(3)
    bad[2].vectors = np.full((1, DIM), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        gallery.add(bad, "model-a")
    assert len(gallery) == 0 and gallery.index.ntotal == 0


def test_not_a_gallery(tmp_path):
    with pytest.raises(GalleryError, match="not a gallery"):
        Gallery.open(tmp_path)


def test_variants_count_once_per_item(gallery):
    rng = np.random.default_rng(3)
    new = items(3)
    new[0].vectors = unit(rng, 4)
    new[0].variants = ["original", "tip1", "tip2", "tip3"]
    gallery.add(new, "model-a")
    assert gallery.index.ntotal == 6 and len(gallery) == 3
    hits = gallery.search(new[0].vectors[2], k=3)[0]
    assert len({h.item.item_id for h in hits}) == len(hits) == 3
    assert hits[0].item.item_id == gallery.items()[0].item_id or hits[0].score == pytest.approx(1.0)


def test_second_process_sees_writes(tmp_path, gallery):
    gallery.add(items(3), "model-a")
    gallery.flush()
    other = Gallery.open(tmp_path / "g")
    res = gallery.add(items(2, start=10), "model-a")
    gallery.remove([gallery.items()[0].item_id])
    # `other` has not been told anything: it catches up from the change log on search.
    hits = other.search(items(2, start=10)[0].vectors, k=10)[0]
    assert {h.item.item_id for h in hits} == {it.item_id for it in gallery.items()}
    assert res.added[0] in {h.item.item_id for h in hits}
    other.close()


WRITER = textwrap.dedent(
    """
    import sys, time, pathlib
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_gallery import items
    from index import Gallery
    import index.vectors
    from index.backends.milvus_backend import MilvusBackend
    mode, root, marker = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    g = Gallery.open(root)
    store_cls = type(g.store)  # SQLite or PostgreSQL
    if mode == "during-transaction":
        original = store_cls.insert_vectors
        calls = []
        def slow(self, *a, **k):
            calls.append(1)
            if len(calls) == 3:
                marker.touch()
                time.sleep(60)
            return original(self, *a, **k)
        store_cls.insert_vectors = slow
    elif g.backend.name == "faiss":  # during the index file write, after the database commit
        def slow(self, path):
            marker.touch()
            time.sleep(60)
        index.vectors.VectorIndex.save = slow
    else:  # during the Milvus write, after the database commit
        def slow(self, vec_ids):
            marker.touch()
            time.sleep(60)
        MilvusBackend._apply = slow
    g.add(items(5, start=100), "model-a")
    g.flush()
    """
)


def _kill_writer(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    marker = tmp_path / f"marker-{mode}"
    proc = subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / "g"), str(marker)])
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"writer exited early or hung (rc={proc.returncode})")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_writer_mid_add_leaves_gallery_as_before(tmp_path, gallery):
    before = gallery.add(items(4), "model-a").added
    gallery.close()
    _kill_writer(tmp_path, "during-transaction")
    g = Gallery.open(tmp_path / "g")
    assert sorted(it.item_id for it in g.items()) == sorted(before)
    assert g.index.ntotal == 4
    # The interrupted add can simply be run again.
    assert len(g.add(items(5, start=100), "model-a").added) == 5
    assert len(g) == 9 and g.index.ntotal == 9
    g.close()


def test_killed_writer_after_commit_is_replayed(tmp_path, gallery):
    gallery.add(items(4), "model-a")
    gallery.close()
    _kill_writer(tmp_path, "during-index-write")
    g = Gallery.open(tmp_path / "g")
    assert len(g) == 9 and g.index.ntotal == 9  # committed add survives, index caught up
    probe = items(5, start=100)[2].vectors
    assert g.search(probe, k=1)[0][0].item.source == "src/102.png"
    g.close()
