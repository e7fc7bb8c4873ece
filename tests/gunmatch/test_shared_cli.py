"""The `gunmatch` command on a shared gallery: one setting each (GUNMATCH_DATABASE_URL,
GUNMATCH_VECTOR_URI) puts a new gallery's items on PostgreSQL and its vectors on Milvus."""

from __future__ import annotations

import json

from gunmatch.cli import main
from index import pg_schema
from index.backends import BackendSpec
from index.itemstore import StoreSpec
from tests.helpers import shape_image, write_image_tree
from tests.servers import drop_shared


def run(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out


def test_build_search_and_export_a_shared_gallery(
    tmp_path, capsys, monkeypatch, postgres_url, milvus_uri
):
    monkeypatch.setenv("GUNMATCH_DATABASE_URL", postgres_url)
    monkeypatch.setenv("GUNMATCH_VECTOR_URI", milvus_uri)
    src = write_image_tree(tmp_path / "src", ["barrel", "magazine", "spring"], 3)
    gal = tmp_path / "gal"
    code, out = run(capsys, "gallery", "build", str(src), "--gallery", str(gal), "--quiet")
    assert code == 0 and "indexed 9 new" in out, out
    manifest = json.loads((gal / "manifest.json").read_text())
    name = manifest["item_store"]["schema"]
    try:
        assert manifest["vector_store"]["collection"] == name
        assert not (gal / "gallery.sqlite").exists() and not (gal / "index.faiss").exists()

        probe = tmp_path / "probe.png"
        shape_image("magazine", 4343).save(probe)
        code, out = run(capsys, "search", "--gallery", str(gal), str(probe), "--k", "3", "--json")
        assert code == 0, out
        shared_hits = json.loads(out)["matches"]
        assert len(shared_hits) == 3

        code, out = run(capsys, "db", "status")  # the URL from GUNMATCH_DATABASE_URL
        latest = pg_schema.LATEST
        assert code == 0 and f"{name}: gallery version {latest} of {latest}" in out

        # A reindex that cannot load its model leaves the shared gallery as it was
        # (tests/gunmatch/test_shared_promote.py re-indexes one in place).
        code = main(["gallery", "reindex", "--gallery", str(gal), "--model", "no-such-model"])
        assert code != 0 and "no-such-model" in capsys.readouterr().err
        assert json.loads((gal / "manifest.json").read_text()) == manifest

        monkeypatch.delenv("GUNMATCH_DATABASE_URL")
        monkeypatch.delenv("GUNMATCH_VECTOR_URI")
        back = tmp_path / "back"
        code, out = run(capsys, "gallery", "export", "--gallery", str(gal), "--out", str(back))
        assert code == 0 and "verified" in out, out
        code, out = run(capsys, "search", "--gallery", str(back), str(probe), "--k", "3", "--json")
        assert code == 0
        embedded_hits = json.loads(out)["matches"]
        assert [(m["item_id"], m["score"]) for m in embedded_hits] == [
            (m["item_id"], m["score"]) for m in shared_hits
        ]
    finally:
        drop_shared(
            BackendSpec("milvus", milvus_uri, name), StoreSpec("postgresql", postgres_url, name)
        )
