"""Approximate indexes against exact search on seeded clustered vectors (faiss's own habit)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from benchmarks.synthvec import ClusteredVectors, VectorSpec, exact_topk, recall_at_k
from index.factory import IndexConfig, build_index

N, DIM, K = 3000, 32, 10


@pytest.fixture(scope="module")
def data():
    faiss.omp_set_num_threads(1)
    gen = ClusteredVectors(VectorSpec(dim=DIM, latent=16, clusters=300, seed=3))
    base, queries = gen.gallery(N), gen.queries(100)
    return base, queries, exact_topk(base, queries, K)


@pytest.mark.parametrize(
    ("kind", "min_recall"),
    [("hnsw", 0.95), ("ivf", 0.9), ("ivfpq", 0.6)],
)
def test_approximate_recall_against_exact(data, kind, min_recall):
    base, queries, truth = data
    ids = np.arange(N, dtype=np.int64) * 7 + 1  # ids are not row numbers
    index = build_index(ids, base, IndexConfig(kind=kind, nlist=32, nprobe=8, pq_m=8))
    assert index.kind == kind and index.ntotal == N
    _, found = index.search(queries, K)
    recall = recall_at_k((found - 1) // 7, truth, K)
    assert recall >= min_recall, f"{kind} recall@{K} = {recall:.3f}"


def test_exact_flat_matches_brute_force(data):
    base, queries, truth = data
    index = build_index(np.arange(N), base, IndexConfig(kind="flat"))
    _, found = index.search(queries, K)
    assert recall_at_k(found, truth, K) == pytest.approx(1.0)


def test_more_ef_search_does_not_lower_hnsw_recall(data):
    base, queries, truth = data
    index = build_index(np.arange(N), base, IndexConfig(kind="hnsw", hnsw_m=8, ef_search=10))
    low = recall_at_k(index.search(queries, K)[1], truth, K)
    index.search_params["ef_search"] = 200
    high = recall_at_k(index.search(queries, K)[1], truth, K)
    assert high >= low and high >= 0.97


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_filtered_search_returns_only_allowed_ids(data, kind):
    base, queries, _ = data
    index = build_index(np.arange(N), base, IndexConfig(kind=kind, nlist=32, nprobe=32))
    allowed = np.arange(0, N, 3)
    _, found = index.search(queries[:10], K, allowed_ids=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    assert (found >= 0).sum() >= 9 * K  # the filter does not starve the result lists
