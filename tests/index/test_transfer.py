"""`gunmatch gallery import|export`: embedded -> PostgreSQL + Milvus -> embedded, verified."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from gunmatch.commands import transfer as transfer_command
from index import Gallery, NewItem
from index.factory import IndexConfig
from index.transfer import copy_gallery, digest
from tests.servers import drop_shared

DIM = 16


def main(argv: list[str]) -> int:
    """`gunmatch gallery import|export` through its own actions."""
    parser = argparse.ArgumentParser(prog="gunmatch gallery")
    transfer_command.register_actions(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def source(tmp_path):
    """An embedded gallery with variants, a PCA transform, files and a calibration."""
    rng = np.random.default_rng(0)
    g = Gallery.create(tmp_path / "src", "model-a", DIM, "xray", IndexConfig(kind="flat"))
    new = [
        NewItem(
            vectors=unit(rng, 1 + i % 3),
            variants=["original", "proj0", "proj1"][: 1 + i % 3],
            label=f"kind {i % 4}",
            image_bytes=f"scan-{i}".encode(),
            thumb_bytes=f"thumb-{i}".encode(),
            category=["barrel", "slide", "magazine", "spring"][i % 4],
            threat=i % 2 == 0,
            modality="xray",
            make_model="Glock 17" if i % 5 == 0 else "",
            notes="扣押 2026" if i == 3 else "",
            added_by="analyst-1",
            source=f"src/{i}.png",
        )
        for i in range(40)
    ]
    g.add(new, "model-a")
    g.remove([g.items()[0].item_id])
    g.update(g.items()[1].item_id, label="renamed", threat=True)
    g.configure_index(IndexConfig(kind="flat"), pca_dim=12)
    g.close()
    (tmp_path / "src" / "calibration.json").write_text('{"alert": 0.8}')
    (tmp_path / "src" / "model").mkdir()
    (tmp_path / "src" / "model" / "meta.json").write_text('{"model_id": "model-a"}')
    return tmp_path / "src"


def search_all(root, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    g = Gallery.open(root)
    try:
        return [[(m.item.item_id, round(m.score, 5)) for m in row] for row in g.search(queries, 8)]
    finally:
        g.close()


def test_round_trip_through_postgres_and_milvus(tmp_path, source, postgres_url, milvus_uri, capsys):
    name = "gallery_roundtrip"
    shared, back = tmp_path / "shared", tmp_path / "back"
    try:
        code = main(
            [
                "import",
                str(source),
                "--gallery",
                str(shared),
                "--database-url",
                postgres_url,
                "--vector-uri",
                milvus_uri,
                "--name",
                name,
                "--json",
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["ok"]
        assert report["source"] == report["copy"]
        g = Gallery.open(source)
        n_vectors = g.store.count_vectors()
        g.close()
        assert (report["copy"]["items"], report["copy"]["vectors"]) == (39, n_vectors)
        assert report["indexed"] == n_vectors > 39

        manifest = json.loads((shared / "manifest.json").read_text())
        assert manifest["item_store"]["schema"] == name
        assert manifest["vector_store"] == {
            "backend": "milvus",
            "uri": milvus_uri,
            "collection": name,
        }
        assert manifest["transform"]["d_out"] == 12
        assert not (shared / "gallery.sqlite").exists() and not (shared / "index.faiss").exists()
        assert (shared / "calibration.json").read_text() == '{"alert": 0.8}'
        assert (shared / "model" / "meta.json").exists()

        queries = unit(np.random.default_rng(5), 6)
        assert search_all(shared, queries) == search_all(source, queries)

        assert main(["export", "--gallery", str(shared), "--out", str(back)]) == 0
        assert "verified: counts and checksum match" in capsys.readouterr().out
        g_src, g_back = Gallery.open(source), Gallery.open(back)
        try:
            assert digest(g_back) == digest(g_src)
            assert g_back.manifest.get("vector_store") is None  # embedded again
            it = g_src.items()[5]
            assert g_back.get(it.item_id) == it  # ids, dates, files, who added it
            assert (back / it.image_file).read_bytes() == (source / it.image_file).read_bytes()
        finally:
            g_src.close()
            g_back.close()
        assert search_all(back, queries) == search_all(source, queries)
    finally:
        from index.backends import BackendSpec
        from index.itemstore import StoreSpec

        drop_shared(
            BackendSpec("milvus", milvus_uri, name), StoreSpec("postgresql", postgres_url, name)
        )


def test_digest_sees_a_changed_vector_or_field(tmp_path, source):
    report = copy_gallery(source, tmp_path / "copy")
    assert report.ok
    g = Gallery.open(tmp_path / "copy")
    try:
        before = digest(g)
        item = g.items()[2]
        with g.store.transaction() as conn:
            conn.execute(
                "UPDATE vectors SET vector=? WHERE item_id=? AND variant='original'",
                (np.zeros(DIM, np.float32).tobytes(), item.item_id),
            )
        changed = digest(g)
        assert (changed.items, changed.vectors) == (before.items, before.vectors)
        assert changed.sha256 != before.sha256
        g.update(item.item_id, notes="edited")
        assert digest(g).sha256 not in (before.sha256, changed.sha256)
    finally:
        g.close()


def test_copy_refuses_an_existing_gallery(tmp_path, source):
    with pytest.raises(Exception, match="already holds a gallery"):
        copy_gallery(source, source)
