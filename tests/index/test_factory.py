"""Index factory: kind resolution, deletions (native and tombstones), compaction, persistence."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index import Gallery, NewItem
from index.factory import (
    IndexConfig,
    build_index,
    create_index,
    list_index_kinds,
    load_index,
    resolve_kind,
)
from index.vectors import VectorIndex

DIM = 16


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def one_thread():
    faiss.omp_set_num_threads(1)


def test_auto_picks_flat_below_threshold_and_ann_above():
    cfg = IndexConfig(flat_max=1000)
    assert resolve_kind(cfg, 10) == "flat"
    assert resolve_kind(cfg, 1000) == "flat"
    assert resolve_kind(cfg, 1001) == "hnsw"
    assert resolve_kind(IndexConfig(flat_max=5, auto_kind="ivfpq"), 6) == "ivfpq"
    assert resolve_kind(IndexConfig(kind="hnsw"), 1) == "hnsw"  # explicit override


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="hnsw"):
        create_index(DIM, IndexConfig(kind="lsh"))
    assert {"auto", "flat", "hnsw", "ivf", "ivfpq"} <= set(list_index_kinds())


def test_untrained_ivf_refuses_vectors():
    index = create_index(DIM, IndexConfig(kind="ivf", nlist=4))
    with pytest.raises(RuntimeError, match="trained"):
        index.add(np.arange(3), unit(3))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_deleted_vectors_never_come_back(kind):
    x = unit(400)
    index = build_index(np.arange(400), x, IndexConfig(kind=kind, nlist=8, nprobe=8))
    assert index.remove(np.array([5, 6, 7, 999])) == 3
    assert index.ntotal == 397
    _, ids = index.search(x[5:8], 5)
    assert not np.isin(ids, [5, 6, 7]).any()
    assert index.remove(np.array([5])) == 0  # already gone


def test_hnsw_tombstones_then_compaction_drops_them():
    x = unit(300, seed=1)
    index = build_index(np.arange(300), x, IndexConfig(kind="hnsw", compact_ratio=0.5))
    index.remove(np.arange(10))
    assert len(index.tombstones) == 10 and index.index.ntotal == 300  # not compacted yet
    assert index.compact() == 10
    assert not index.tombstones and index.index.ntotal == 290 and index.ntotal == 290
    _, ids = index.search(x[:20], 1)
    assert (ids[10:, 0] == np.arange(10, 20)).all()  # survivors still found exactly
    assert not np.isin(ids, np.arange(10)).any()


def test_hnsw_compacts_itself_past_the_ratio():
    x = unit(100, seed=2)
    index = build_index(np.arange(100), x, IndexConfig(kind="hnsw", compact_ratio=0.1))
    index.remove(np.arange(5))
    assert len(index.tombstones) == 5
    index.remove(np.arange(5, 12))
    assert not index.tombstones and index.index.ntotal == 88


def test_readding_a_tombstoned_id_replaces_the_old_vector():
    x = unit(50, seed=3)
    index = build_index(np.arange(50), x, IndexConfig(kind="hnsw"))
    index.remove(np.array([4]))
    index.add(np.array([4]), x[7:8])
    _, ids = index.search(x[7:8], 2)
    assert sorted(ids[0].tolist()) == [4, 7]
    scores, ids = index.search(x[4:5], 50)
    assert (ids[0] == 4).sum() == 1  # one copy, holding the new vector
    assert scores[0][ids[0] == 4][0] == pytest.approx(float(x[4] @ x[7]), abs=1e-5)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_save_load_and_mmap_load_keep_results_and_tombstones(tmp_path, kind):
    x = unit(600, seed=4)
    index = build_index(np.arange(600), x, IndexConfig(kind=kind, nlist=8, pq_m=4))
    index.remove(np.array([1, 2]))
    before = index.search(x[:20], 5)[1]
    index.save(tmp_path / "i.faiss")
    for mmap in (False, True):
        back = load_index(tmp_path / "i.faiss", mmap=mmap)
        assert back.kind == kind and back.ntotal == 598
        np.testing.assert_array_equal(back.search(x[:20], 5)[1], before)


def test_torn_sidecar_is_detected(tmp_path):
    index = build_index(np.arange(20), unit(20), IndexConfig(kind="hnsw"))
    index.save(tmp_path / "i.faiss")
    build_index(np.arange(30), unit(30), IndexConfig(kind="hnsw")).save(tmp_path / "j.faiss")
    (tmp_path / "i.faiss.meta.json").write_bytes((tmp_path / "j.faiss.meta.json").read_bytes())
    with pytest.raises(RuntimeError, match="does not match"):
        VectorIndex.load(tmp_path / "i.faiss")


def _items(n: int, seed: int = 0) -> list[NewItem]:
    return [
        NewItem(vectors=v[None], label=f"l{i}", image_bytes=f"img-{seed}-{i}".encode())
        for i, v in enumerate(unit(n, seed))
    ]


def test_gallery_switches_to_ann_past_threshold_and_deletions_survive_reopen(tmp_path, backends):
    config = IndexConfig(flat_max=30)
    g = Gallery.create(tmp_path / "g", "m", DIM, index_config=config, **backends)
    first = g.add(_items(20), "m").added
    g.flush()
    assert g.info()["index_type"] == "flat"
    g.add(_items(20, seed=1), "m")
    g.flush()
    assert g.index.kind == "hnsw" and g.manifest["index_type"] == "hnsw"
    g.remove(first[:3])
    g.close()
    g = Gallery.open(tmp_path / "g")
    assert g.index.kind == "hnsw" and g.index.ntotal == 37
    probe = g.item_vectors(first[5])
    assert g.search(probe, k=1)[0][0].item.item_id == first[5]
    hits = {m.item.item_id for m in g.search(unit(5, seed=0), k=37)[0]}
    assert not hits & set(first[:3])
    g.close()
