"""The milvus vector backend on a real milvus-lite server process, against the FAISS backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.synthvec import ClusteredVectors, VectorSpec, exact_topk, recall_at_k
from index import Filters, Gallery, NewItem
from index.backends import BackendSpec
from index.backends.milvus_backend import VECTOR_GENERATION, MilvusBackend, connect
from index.backends.milvus_params import filter_expr, index_params, search_params
from index.factory import IndexConfig

DIM = 24
CATS = ["barrel", "slide", "magazine", "spring"]


def make_items(vectors: np.ndarray, variants: int = 1, seed: int = 0) -> list[NewItem]:
    """One item per ``variants`` consecutive rows, with varied metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for n, start in enumerate(range(0, len(vectors), variants)):
        out.append(
            NewItem(
                vectors=vectors[start : start + variants],
                label=f'label "{n % 5}"',  # quotes must survive the Milvus filter
                image_bytes=f"img-{seed}-{n}".encode(),
                category=CATS[n % 4],
                threat=bool(rng.integers(0, 2)),
                modality="xray" if n % 3 == 0 else "photo",
                source=f"src/{n}.png",
            )
        )
    return out


def unit_rows(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def milvus_gallery(root: Path, uri: str, name: str, config: IndexConfig | None = None) -> Gallery:
    spec = BackendSpec("milvus", uri, name)
    return Gallery.create(root, "model-a", DIM, index_config=config, vector_store=spec)


def close_and_drop(*galleries: Gallery) -> None:
    """Close the galleries, then delete their Milvus collections."""
    for g in galleries:
        g.close()
    for g in galleries:
        if g.backend_spec.backend == "milvus":
            client = connect(g.backend_spec.uri)
            if client.has_collection(g.backend_spec.collection):
                client.drop_collection(g.backend_spec.collection)
            client.close()


def assert_same_hits(got: list, want: list) -> None:
    """Same items in the same order, scores equal to float precision."""
    for g, w in zip(got, want, strict=True):
        assert [i for i, _ in g] == [i for i, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], atol=1e-5)


def hits_of(gallery: Gallery, queries: np.ndarray, k: int, filters: Filters | None = None):
    return [[(m.item.item_id, m.score) for m in row] for row in gallery.search(queries, k, filters)]


# -- pure mappings -------------------------------------------------------------------------
def test_filters_become_milvus_expressions():
    assert filter_expr(None) == ""
    expr = filter_expr(Filters(category="Barrel", modality="xray", threat=True, label='a"b\\'))
    assert expr == (
        'category == "barrel" and modality == "xray" and threat == true and label == "a\\"b\\\\"'
    )
    assert filter_expr(Filters(threat=False)) == "threat == false"


def test_index_config_maps_to_milvus_index_params():
    cfg = IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=80, ef_search=40)
    assert index_params(cfg, 10, DIM) == ("hnsw", "HNSW", {"M": 16, "efConstruction": 80})
    assert search_params(cfg, "hnsw", 100)["params"] == {"ef": 100}  # ef >= limit
    ivf = IndexConfig(kind="ivf", nlist=64, nprobe=8)
    assert index_params(ivf, 10_000, DIM) == ("ivf", "IVF_FLAT", {"nlist": 64})
    assert search_params(ivf, "ivf", 10) == {"metric_type": "IP", "params": {"nprobe": 8}}
    assert index_params(IndexConfig(), 5, DIM)[:2] == ("flat", "FLAT")
    assert index_params(IndexConfig(flat_max=3), 5, DIM)[:2] == ("hnsw", "HNSW")
    pq = index_params(IndexConfig(kind="ivfpq", pq_m=6), 5000, DIM)
    assert pq[1] == "IVF_PQ" and pq[2]["m"] == 6 and pq[2]["nbits"] == 8


# -- against the FAISS backend -------------------------------------------------------------
def make_twin(tmp_path: Path, milvus_uri: str, name: str, n: int):
    """The same n/2 items (two vectors each) in a FAISS and a Milvus gallery, exact search."""
    vecs = unit_rows(n, seed=1)
    flat = IndexConfig(kind="flat")
    faiss_g = Gallery.create(tmp_path / "faiss", "model-a", DIM, index_config=flat)
    milvus_g = milvus_gallery(tmp_path / "milvus", milvus_uri, name, flat)
    faiss_g.add(make_items(vecs, variants=2), "model-a")
    milvus_g.add(make_items(vecs, variants=2), "model-a")
    return faiss_g, milvus_g


@pytest.fixture(scope="module")
def twin(tmp_path_factory, milvus_uri):
    """600 vectors in both backends, shared by the read-only comparisons."""
    faiss_g, milvus_g = make_twin(tmp_path_factory.mktemp("twin"), milvus_uri, "t_twin", 600)
    yield faiss_g, milvus_g
    close_and_drop(faiss_g, milvus_g)


@pytest.mark.parametrize(
    "filters",
    [
        None,
        Filters(category="slide"),
        Filters(threat=True),
        Filters(modality="xray", threat=False),
        Filters(label='label "3"'),
        Filters(category="barrel", label='label "0"'),
    ],
)
def test_exact_results_equal_faiss(twin, filters):
    faiss_g, milvus_g = twin
    assert milvus_g.index.kind == "flat" and milvus_g.index.ntotal == 600
    queries = unit_rows(25, seed=7)
    want = hits_of(faiss_g, queries, 10, filters)
    assert any(want)
    assert_same_hits(hits_of(milvus_g, queries, 10, filters), want)


def test_deletes_and_updates_are_real(tmp_path, milvus_uri, collection_name):
    faiss_g, milvus_g = make_twin(tmp_path, milvus_uri, collection_name, 60)
    victim = milvus_g.items()[0]
    probe = milvus_g.item_vectors(victim.item_id)[:1]
    assert milvus_g.search(probe, 1)[0][0].item.item_id == victim.item_id
    milvus_g.remove([victim.item_id])
    faiss_g.remove([victim.item_id])
    rows = milvus_g.backend.client.query(
        milvus_g.backend.collection,
        filter=f'item_id == "{victim.item_id}"',
        output_fields=["vec_id"],
    )
    assert list(rows) == [] and milvus_g.index.ntotal == 58  # gone, not tombstoned
    assert victim.item_id not in {m.item.item_id for m in milvus_g.search(probe, 10)[0]}

    # A metadata edit reaches the filter fields Milvus holds.
    item = milvus_g.items()[0]
    new_cat = next(c for c in CATS if c != item.category)
    milvus_g.update(item.item_id, category=new_cat, threat=not item.threat)
    faiss_g.update(item.item_id, category=new_cat, threat=not item.threat)
    rows = milvus_g.backend.client.query(
        milvus_g.backend.collection,
        filter=f'item_id == "{item.item_id}"',
        output_fields=["category", "threat"],
    )
    assert {(r["category"], r["threat"]) for r in rows} == {(new_cat, not item.threat)}
    probe = milvus_g.item_vectors(item.item_id)[:1]
    for f in (Filters(category=new_cat), Filters(category=item.category)):
        assert_same_hits(hits_of(milvus_g, probe, 5, f), hits_of(faiss_g, probe, 5, f))
    assert milvus_g.search(probe, 1, Filters(category=new_cat))[0][0].item.item_id == item.item_id
    close_and_drop(faiss_g, milvus_g)


@pytest.mark.slow
def test_hnsw_recall_against_exact(tmp_path, milvus_uri, collection_name):
    n, k = 3000, 10
    gen = ClusteredVectors(VectorSpec(dim=DIM, latent=12, clusters=200, seed=3))
    base, queries = gen.gallery(n), gen.queries(100)
    truth = exact_topk(base, queries, k)
    cfg = IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)
    g = milvus_gallery(tmp_path / "g", milvus_uri, collection_name, cfg)
    try:
        g.add(make_items(base), "model-a")
        assert g.index.kind == "hnsw" and g.index.ntotal == n
        row_of = {it.item_id: int(it.source[4:-4]) for it in g.items()}
        found = np.array([[row_of[m.item.item_id] for m in row] for row in g.search(queries, k)])
        recall = recall_at_k(found, truth, k)
        assert recall >= 0.95, f"Milvus HNSW recall@{k} = {recall:.3f}"
    finally:
        close_and_drop(g)


def test_other_process_sees_adds_at_once_and_reopens(tmp_path, milvus_uri, collection_name):
    g = milvus_gallery(tmp_path / "g", milvus_uri, collection_name)
    other = Gallery.open(tmp_path / "g")  # a second opener: no replay of its own
    try:
        new = make_items(unit_rows(8, seed=3))
        g.add(new, "model-a")
        assert other.search(new[5].vectors, 1)[0][0].item.source == "src/5.png"
        assert other.index.ntotal == 8
        g.close()
        again = Gallery.open(tmp_path / "g")
        assert again.manifest["vector_store"] == {
            "backend": "milvus",
            "uri": milvus_uri,
            "collection": collection_name,
        }
        assert again.search(new[2].vectors, 1)[0][0].item.source == "src/2.png"
        assert again.info()["vector_store"]["backend"] == "milvus"
        again.close()
    finally:
        close_and_drop(other)


def test_commit_without_milvus_write_is_replayed(
    tmp_path, milvus_uri, collection_name, monkeypatch
):
    g = milvus_gallery(tmp_path / "g", milvus_uri, collection_name)
    g.add(make_items(unit_rows(4, seed=5)), "model-a")

    def crash(self, vec_ids):
        raise RuntimeError("writer died after the database commit")

    monkeypatch.setattr(MilvusBackend, "_apply", crash)
    late = make_items(unit_rows(3, seed=6), seed=6)
    with pytest.raises(RuntimeError):
        g.add(late, "model-a")
    monkeypatch.undo()
    assert int(g.store.get_meta(VECTOR_GENERATION)) < g.store.generation()
    reader = Gallery.open(tmp_path / "g")  # finds Milvus behind and the lock free: replays
    assert reader.search(late[1].vectors, 1)[0][0].item.sha256 == late[1].sha256
    assert int(reader.store.get_meta(VECTOR_GENERATION)) == reader.store.generation()
    assert reader.index.ntotal == 7
    close_and_drop(reader, g)


def test_auto_kind_switches_milvus_index_on_flush(tmp_path, milvus_uri, collection_name):
    g = milvus_gallery(tmp_path / "g", milvus_uri, collection_name, IndexConfig(flat_max=20))
    try:
        vecs = unit_rows(30, seed=9)
        g.add(make_items(vecs), "model-a")
        assert g.index.kind == "flat"
        g.flush()  # crossed flat_max: HNSW now
        assert g.index.kind == "hnsw" and g.manifest["index_type"] == "hnsw"
        info = g.backend.client.describe_index(collection_name, "vector")
        assert info["index_type"] == "HNSW"
        assert g.search(vecs[7], 1)[0][0].item.source == "src/7.png"
        assert g.store.changes_since(0) == []  # the log was pruned up to Milvus's generation
    finally:
        close_and_drop(g)


def test_existing_collection_is_refused(tmp_path, milvus_uri, collection_name):
    g = milvus_gallery(tmp_path / "a", milvus_uri, collection_name)
    try:
        with pytest.raises(Exception, match="already exists"):
            milvus_gallery(tmp_path / "b", milvus_uri, collection_name)
    finally:
        close_and_drop(g)


def test_milvus_ahead_of_a_restored_store_is_reindexed(tmp_path, milvus_uri, collection_name):
    g = milvus_gallery(tmp_path / "g", milvus_uri, collection_name)
    vecs = unit_rows(6, seed=12)
    g.add(make_items(vecs), "model-a")
    # As if the database came back from a backup older than the collection: Milvus says it
    # is at a later generation, and holds a row the store does not know.
    g.backend.client.delete(collection_name, ids=[g.store.vec_ids_where("1=1")[0].item()])
    with g.store.transaction() as conn:
        g.store.set_meta(conn, VECTOR_GENERATION, str(g.store.generation() + 5))
    g.close()
    again = Gallery.open(tmp_path / "g")
    try:
        assert int(again.store.get_meta(VECTOR_GENERATION)) == again.store.generation()
        assert again.index.ntotal == 6  # re-indexed from the store: the deleted row is back
        assert again.search(vecs[0], 1)[0][0].item.source == "src/0.png"
    finally:
        close_and_drop(again)
