"""PCA / whitening transform: pure maths, serialisation, and its place in the gallery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.synthvec import ClusteredVectors, VectorSpec, exact_topk, recall_at_k
from index import Gallery, ModelMismatchError, NewItem
from index.factory import IndexConfig
from index.transform import PcaTransform, fit_pca, load_transform, save_transform

DIM = 48


@pytest.fixture(scope="module")
def vecs():
    gen = ClusteredVectors(VectorSpec(dim=DIM, latent=12, clusters=50, noise=0.02, seed=5))
    return gen.gallery(1500), gen.queries(60)


def test_components_are_orthonormal_and_energy_is_reported(vecs):
    base, _ = vecs
    t = fit_pca(base, 12)
    np.testing.assert_allclose(t.components @ t.components.T, np.eye(12), atol=1e-4)
    assert t.d_in == DIM and t.d_out == 12
    assert 0.95 < t.energy <= 1.0  # the data has 12 latent dimensions plus a little noise
    assert fit_pca(base, 2).energy < t.energy


def test_uncentred_pca_keeps_the_neighbours_of_low_rank_data(vecs):
    base, queries = vecs
    t = fit_pca(base, 12)
    truth = exact_topk(base, queries, 10)
    reduced = exact_topk(t.apply(base), t.apply(queries), 10)
    assert recall_at_k(reduced, truth, 10) >= 0.9
    too_small = exact_topk(fit_pca(base, 2).apply(base), fit_pca(base, 2).apply(queries), 10)
    assert recall_at_k(too_small, truth, 10) < recall_at_k(reduced, truth, 10)


def test_whitened_output_is_unit_length_and_centred_fit(vecs):
    base, _ = vecs
    t = fit_pca(base, 8, whiten=True)
    y = t.apply(base)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert np.abs(t.mean).sum() > 0 and t.whiten


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        fit_pca(np.zeros((10, 4), np.float32), 5)
    with pytest.raises(ValueError):
        fit_pca(np.zeros((1, 4), np.float32), 2)
    with pytest.raises(ValueError, match="dimension 4"):
        fit_pca(np.random.rand(10, 4), 2).apply(np.zeros((1, 3)))


def test_roundtrip_and_checksum(tmp_path, vecs):
    base, _ = vecs
    t = fit_pca(base, 6, whiten=True)
    rec = save_transform(t, tmp_path / "transform.npz")
    back = load_transform(tmp_path, rec)
    assert isinstance(back, PcaTransform) and back.whiten
    np.testing.assert_array_equal(back.apply(base[:5]), t.apply(base[:5]))
    (tmp_path / "transform.npz").write_bytes(fit_pca(base, 6).to_bytes())
    with pytest.raises(ValueError, match="sha256"):
        load_transform(tmp_path, rec)
    assert load_transform(tmp_path, None) is None


def test_gallery_learns_records_and_reapplies_the_transform(tmp_path, vecs, backends):
    base, queries = vecs
    g = Gallery.create(tmp_path / "g", "m", DIM, **backends)
    items = [
        NewItem(vectors=v[None], label=f"l{i}", image_bytes=f"i{i}".encode())
        for i, v in enumerate(base[:300])
    ]
    ids = g.add(items, "m").added
    info = g.configure_index(IndexConfig(kind="hnsw"), pca_dim=12)
    assert info["transform"]["d_out"] == 12 and info["index_type"] == "hnsw"
    assert g.index.dim == 12 and g.dim == DIM  # queries still arrive in model space
    g.close()
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["transform"]["file"] == "transform.npz"
    assert manifest["index"]["kind"] == "hnsw"
    g = Gallery.open(tmp_path / "g")
    assert g.transform is not None and g.index.dim == 12
    assert g.search(base[7], k=1)[0][0].item.item_id == ids[7]
    g.add([NewItem(vectors=queries[:1], label="new", image_bytes=b"new")], "m")
    assert g.search(queries[0], k=1)[0][0].item.label == "new"  # added after: transformed too
    with pytest.raises(ModelMismatchError):
        g.search(np.zeros((1, 12), np.float32))
    g.configure_index(pca_dim=0)
    assert g.transform is None and g.index.dim == DIM and "transform" not in g.manifest
    assert g.search(base[7], k=1)[0][0].item.item_id == ids[7]
    g.close()
