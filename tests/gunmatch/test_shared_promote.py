"""Promotion, rollback and reindex of a shared gallery (items on a real PostgreSQL, vectors
on a real milvus-lite server): the candidate is built in a new collection beside the live one,
gated, caught up on what replicas changed meanwhile and switched; keys, audit chain and
feedback never move."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import torch

from gunmatch.cli import main
from gunmatch.database import create_shared_state
from gunmatch.indexing import build, gallery_writer, scan_source
from gunmatch.service import create_engine
from gunmatch.state import load_keyring, open_state
from index import Filters, Gallery, GalleryError, ModelMismatchError, NewItem
from index.backends import BackendSpec
from index.backends.milvus_backend import connect
from index.itemstore import StoreSpec
from index.shadow import SharedShadow
from index.transfer import copy_gallery
from matcher import Embedder, build_pretrained, load_checkpoint, save_checkpoint
from matcher.model import with_preprocess
from tests.api.helpers import hdr, png_bytes, start_serve, stop, wait_ready
from tests.helpers import varied_image, write_varied_tree
from tests.servers import drop_shared
from training.registry import Registry

LABELS = ["barrel", "magazine", "spring"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A good model (ImageNet lite0 at 64 px) and a bad one (its last blocks scrambled)."""
    root = tmp_path_factory.mktemp("models")
    good = with_preprocess(build_pretrained(), input_size=64)
    bad = with_preprocess(build_pretrained(), input_size=64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bad.backbone.net._blocks[-3:].parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * p.std())
    bad.weights_sha256 = None
    return save_checkpoint(good, root / "good"), save_checkpoint(bad, root / "bad")


@pytest.fixture(scope="module")
def built(tmp_path_factory, models):
    """The same nine drawings as an embedded gallery per model, and the query set."""
    root = tmp_path_factory.mktemp("built")
    src = write_varied_tree(root / "src", LABELS, 3)
    out = {"queries": write_varied_tree(root / "queries", LABELS, 3)}
    for name, model in zip(("good", "bad"), models, strict=True):
        engine = create_engine(root / name, str(model), threads=1)
        try:
            writer = gallery_writer(engine.gallery, engine.embedder.model_id)
            build(scan_source(src), engine.embedder, writer, progress=False)
        finally:
            engine.close()
        out[name] = root / name
    return out


def collections(uri: str, name: str) -> set[str]:
    """The Milvus collections of the test gallery ``name`` (its own and its shadows')."""
    client = connect(uri)
    try:
        return {c for c in client.list_collections() if c == name or c.startswith(f"{name}__")}
    finally:
        client.close()


def sql(url: str, schema: str, query: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query.replace("{schema}", schema)).fetchall()


@pytest.fixture()
def share(tmp_path, built, postgres_url, milvus_uri):
    """share(which): the embedded gallery built with ``which`` model, imported into its own
    schema + collection with its shared state; everything it made is dropped afterwards."""
    names: list[str] = []

    def make(which: str) -> tuple[Path, str]:
        name = f"p_{uuid.uuid4().hex[:12]}"
        names.append(name)
        gal = tmp_path / f"gal-{which}"
        vector = BackendSpec("milvus", milvus_uri, name)
        store = StoreSpec("postgresql", postgres_url, name)
        assert copy_gallery(built[which], gal, vector_store=vector, item_store=store).ok
        create_shared_state(gal)
        return gal, name

    yield make
    for name in names:
        for c in collections(milvus_uri, name):
            drop_shared(BackendSpec("milvus", milvus_uri, c), None)
        drop_shared(None, StoreSpec("postgresql", postgres_url, name), postgres_url)


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def common(gal: Path) -> list[str]:
    reg = gal.with_name(f"{gal.name}.reg")
    return ["--gallery", str(gal), "--registry", str(reg), "--quiet", "--threads", "1"]


def manifest(gal: Path) -> dict:
    return json.loads((gal / "manifest.json").read_text())


def embed(model_dir: Path, raw: bytes) -> np.ndarray:
    return Embedder(load_checkpoint(model_dir), threads=1).embed([raw], "photo")[0]


def top(gal: Path, vec: np.ndarray, filters: Filters | None = None):
    with Gallery.open(gal) as g:
        return g.search(vec[None, :], 3, filters)[0]


def keyring():
    return load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"])


def test_promote_switches_model_and_collection_and_keeps_keys_and_audit_chain(
    share, models, built, capsys, postgres_url, milvus_uri
):
    good, bad = models
    gal, name = share("bad")
    bad_id, good_id = manifest(gal)["model_id"], load_checkpoint(good).model_id
    state = open_state(gal, keyring=keyring())
    try:
        analyst = state.keys.create("desk", "analyst")[1]
        state.keys.create("root", "admin")
        for i in range(3):
            state.audit.append("search", "desk", query_id=f"q{i}", model_id=bad_id)
        reloads = state.reload_generation()
    finally:
        state.close()
    stale = Gallery.open(gal)  # a replica that will not have reloaded yet
    item = stale.items()[0]
    raw = (gal / item.image_file).read_bytes()

    code, out = run(capsys, "model", "promote", str(good), "--eval-queries",
                    str(built["queries"]), "--threat-labels", "barrel", *common(gal))  # fmt: skip
    assert code == 0, out
    # Until it reloads, the old replica still finds items in its (kept) collection, and may
    # not write: its vectors would be the old model's.
    hit = stale.search(embed(bad, raw)[None, :], 1)[0][0]
    assert hit.item.item_id == item.item_id and hit.score > 0.999
    with pytest.raises(ModelMismatchError, match="reload before writing"):
        stale.remove([item.item_id])
    stale.close()
    assert "promoted" in out and f"reload generation {reloads + 1}" in out
    new = manifest(gal)
    assert new["model_id"] == good_id and new["dim"] == load_checkpoint(good).dim
    assert new["vector_store"]["collection"] != name
    assert new["item_store"]["schema"] == name  # items, keys and chain stay in their schema
    # The old collection is kept (replicas not yet reloaded still search it) until the next switch.
    assert collections(milvus_uri, name) == {name, new["vector_store"]["collection"]}
    assert load_checkpoint(gal / "model").model_id == good_id
    assert json.loads((gal / "calibration.json").read_text())["model_id"] == good_id

    # Searches run on the candidate's vectors: an item's own image, embedded by the new
    # model, finds it at cosine 1; the store holds the new vectors in place.
    hit = top(gal, embed(good, raw))[0]
    assert hit.item.item_id == item.item_id and hit.score > 0.999
    with Gallery.open(gal) as g:
        assert len(g) == 9 and g.index.ntotal == 9
        np.testing.assert_allclose(g.item_vectors(item.item_id)[0], embed(good, raw), atol=1e-5)
    kept = sql(postgres_url, name, "SELECT model_id, count(*) FROM {schema}.shadow_vectors "
               "GROUP BY model_id")  # fmt: skip
    assert kept == [(bad_id, 9)]  # the outgoing model's vectors, for a fast rollback

    state = open_state(gal, keyring=keyring())
    try:
        assert state.keys.authenticate(analyst).name == "desk"
        assert state.reload_generation() == reloads + 1
        state.audit.append("search", "desk", query_id="after", model_id=good_id)
    finally:
        state.close()
    code, out = run(capsys, "audit", "verify", "--gallery", str(gal))
    assert code == 0 and "OK: 4 records, chain intact" in out, out
    history = Registry(gal.with_name(f"{gal.name}.reg")).history()
    assert history[-1]["action"] == "promote"
    assert history[-1]["collection"] == new["vector_store"]["collection"]


def test_a_refused_gate_changes_nothing_and_leaves_no_collection(
    share, models, built, capsys, postgres_url, milvus_uri
):
    _, bad = models
    gal, name = share("good")
    before, files = manifest(gal), sorted(p.name for p in gal.iterdir())
    code, out = run(capsys, "model", "promote", str(bad), "--eval-queries",
                    str(built["queries"]), *common(gal))  # fmt: skip
    assert code == 1 and "promotion refused" in out and "fell from" in out, out
    assert manifest(gal) == before and sorted(p.name for p in gal.iterdir()) == files
    assert collections(milvus_uri, name) == {name}
    assert sql(postgres_url, name, "SELECT count(*) FROM {schema}.shadow_vectors") == [(0,)]
    meta = dict(sql(postgres_url, name, "SELECT key, value FROM {schema}.meta"))
    assert "changes_hold" not in meta and "model_id" not in meta


def test_what_replicas_change_while_the_shadow_is_built_is_caught_up(
    share, models, built, capsys, monkeypatch
):
    good, bad = models
    gal, _ = share("bad")
    with Gallery.open(gal) as g:
        victim, edited = g.items()[0], g.items()[4]
    raw_new = png_bytes(varied_image("spring", 4242))
    import training.shared_shadow as shared_shadow

    evaluate_rows = shared_shadow.evaluate_rows

    def replica_writes_then_evaluate(*args, **kwargs):
        # After the bulk re-embedding, before the switch: a replica on the old model adds,
        # deletes and edits through the live gallery.
        with Gallery.open(gal) as replica:
            vec = embed(gal / "model", raw_new)
            replica.add([NewItem(vectors=vec[None, :], label="spring", image_bytes=raw_new,
                                 category="other")], replica.model_id)  # fmt: skip
            replica.remove([victim.item_id])
            replica.update(edited.item_id, label="renamed")
        return evaluate_rows(*args, **kwargs)

    monkeypatch.setattr(shared_shadow, "evaluate_rows", replica_writes_then_evaluate)
    code, out = run(capsys, "model", "promote", str(good), "--eval-queries",
                    str(built["queries"]), *common(gal))  # fmt: skip
    assert code == 0, out
    with Gallery.open(gal) as g:
        assert g.model_id == load_checkpoint(good).model_id
        ids = {it.item_id for it in g.items()}
        assert len(g) == 9 and g.index.ntotal == 9 and victim.item_id not in ids
    added = top(gal, embed(good, raw_new))[0]
    assert added.item.label == "spring" and added.score > 0.999
    raw_edited = (gal / edited.image_file).read_bytes()
    vec = embed(good, raw_edited)
    assert [m.item.item_id for m in top(gal, vec, Filters(label="renamed"))] == [edited.item_id]
    assert edited.item_id not in {m.item.item_id for m in top(gal, vec, Filters(label="x"))}
    record = Registry(gal.with_name(f"{gal.name}.reg")).history()[-1]
    assert record["caught_up"]["added"] == 1 and record["caught_up"]["removed"] == 1


def test_rollback_restores_the_previous_model_and_its_calibration(
    share, models, built, capsys, milvus_uri
):
    good, bad = models
    gal, name = share("bad")
    bad_id = manifest(gal)["model_id"]
    first_cal = {"model_id": bad_id, "alert": 0.91, "review": 0.77, "source": "analyst"}
    (gal / "calibration.json").write_text(json.dumps(first_cal))
    code, out = run(capsys, "model", "promote", str(good), "--eval-queries",
                    str(built["queries"]), "--threat-labels", "barrel", *common(gal))  # fmt: skip
    assert code == 0, out
    promoted = manifest(gal)["vector_store"]["collection"]
    raw_new = png_bytes(varied_image("magazine", 777))
    with Gallery.open(gal) as g:  # added under the promoted model
        g.add([NewItem(vectors=embed(good, raw_new)[None, :], label="magazine",
                       image_bytes=raw_new)], g.model_id)  # fmt: skip

    code, out = run(capsys, "model", "rollback", *common(gal))
    assert code == 0 and f"to model {bad_id}" in out and "reload generation" in out, out
    assert manifest(gal)["model_id"] == bad_id
    assert load_checkpoint(gal / "model").model_id == bad_id
    assert json.loads((gal / "calibration.json").read_text()) == first_cal
    record = Registry(gal.with_name(f"{gal.name}.reg")).history()[-1]
    # The kept vectors of the first model were reused: only the item added since is embedded.
    assert record["action"] == "rollback" and record["embedded"] == 1
    assert record["calibration_restored"] is True
    hit = top(gal, embed(bad, raw_new))[0]
    assert hit.item.label == "magazine" and hit.score > 0.999
    with Gallery.open(gal) as g:
        assert len(g) == 10 and g.index.ntotal == 10
    # The first collection (retired two switches ago) is dropped; the promoted one is kept.
    live = manifest(gal)["vector_store"]["collection"]
    assert collections(milvus_uri, name) == {promoted, live}


def test_reindex_of_a_shared_gallery_switches_in_place(share, models, capsys, milvus_uri):
    good, _ = models
    gal, name = share("bad")
    # One switch of a gallery at a time: a shadow being built refuses a second one.
    with Gallery.open(gal) as g:
        first = SharedShadow.begin(g, "some-candidate", 4)
        with pytest.raises(GalleryError, match="another promotion"):
            SharedShadow.begin(g, "another-candidate", 4)
        first.discard()
        first.close()
    assert collections(milvus_uri, name) == {name}
    state = open_state(gal)
    try:
        secret = state.keys.create("desk", "analyst")[1]
    finally:
        state.close()
    code, out = run(capsys, "gallery", "reindex", "--gallery", str(gal), "--model", str(good),
                    "--quiet", "--threads", "1")  # fmt: skip
    assert code == 0 and "re-indexed 9 items" in out and "reload generation" in out, out
    assert manifest(gal)["model_id"] == load_checkpoint(good).model_id
    assert len(collections(milvus_uri, name)) == 2 and not (gal / "gallery.sqlite").exists()
    state = open_state(gal)
    try:
        assert state.keys.authenticate(secret).name == "desk"
    finally:
        state.close()


@pytest.mark.slow
def test_a_running_replica_picks_up_the_promotion_without_a_restart(share, models, built, capsys):
    good, _ = models
    gal, _ = share("bad")
    bad_id, good_id = manifest(gal)["model_id"], load_checkpoint(good).model_id
    state = open_state(gal)
    try:
        key = state.keys.create("desk", "analyst")[1]
    finally:
        state.close()
    probe = png_bytes(varied_image("barrel", 1))  # barrel_1 of the gallery

    def search(url: str) -> dict:
        r = httpx.post(f"{url}/v1/search", files={"image": ("q.png", probe)},
                       data={"k": "3"}, headers=hdr(key), timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        return r.json()

    url, proc = start_serve(gal, GUNMATCH_RELOAD_POLL_S="0.5")
    try:
        wait_ready(url, proc)
        assert search(url)["model_id"] == bad_id
        code, out = run(capsys, "model", "promote", str(good), "--eval-queries",
                        str(built["queries"]), *common(gal))  # fmt: skip
        assert code == 0, out
        deadline = time.monotonic() + 60
        while (body := search(url))["model_id"] != good_id:
            assert time.monotonic() < deadline, "the replica never reloaded"
            time.sleep(0.3)
        assert body["matches"][0]["label"] == "barrel" and body["matches"][0]["score"] > 0.999
        assert proc.poll() is None  # the same process: reloaded, not restarted
    finally:
        stop(proc)
    code, out = run(capsys, "audit", "verify", "--gallery", str(gal))
    assert code == 0, out
