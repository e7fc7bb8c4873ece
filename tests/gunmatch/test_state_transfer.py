"""`gunmatch gallery import|export` carry the service state (issue #16): keys (hashes only),
feedback with its images and the audit chain, verbatim, into PostgreSQL and back, verified;
sessions are left behind; a destination that already holds state is refused. Real
PostgreSQL + milvus-lite."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import psycopg
import pytest

from gunmatch.cli import main
from gunmatch.state import KeyStore, StateLocation, load_keyring, open_state
from gunmatch.state import pg_schema as state_schema
from gunmatch.state.transfer import StateNotEmptyError, copy_state
from index import Gallery, NewItem
from index.backends import BackendSpec
from index.factory import IndexConfig
from index.itemstore import StoreSpec
from index.postgres import PortablePgDB
from tests.servers import drop_shared

DIM = 16


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _keyring():
    return load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"])


@pytest.fixture()
def station(tmp_path):
    """An embedded gallery whose state (in its own --state directory) holds two keys (one
    revoked), a session, a feedback with its image and four audit rows (one kept image)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "station"
    g = Gallery.create(src, "model-a", DIM, "photo", IndexConfig(kind="flat"))
    vecs = rng.normal(size=(4, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    g.add([NewItem(vectors=vecs[i : i + 1], label=f"kind {i}", image_bytes=f"img-{i}".encode())
           for i in range(4)], "model-a")  # fmt: skip
    item = g.items()[0]
    g.close()
    sdir = tmp_path / "station-state"
    state = open_state(src, sdir, _keyring())
    try:
        _, root = state.keys.create("root", "admin")
        _, old = state.keys.create("old desk", "station")
        state.keys.revoke("old desk")
        state.sessions.create(state.keys.get("root"), 600)
        (sdir / "feedback").mkdir()
        (sdir / "feedback" / "q1.png").write_bytes(b"query image one")
        state.feedback.add("root", "q_1", "1" * 64, "feedback/q1.png", item.item_id, "wrong",
                           correct_label="kind 9")  # fmt: skip
        sha, rel = state.audit.store_image(b"kept query", ".png")
        state.audit.append("search", "root", "q_1", sha, rel, "model-a", "match", [1, 2])
        state.audit.append("feedback", "root", "q_1")
        state.audit.append("keys.revoke", "root", results={"name": "old desk"})
        state.audit.append("search", "old desk", "q_2")
    finally:
        state.close()
    return {"gallery": src, "state": sdir, "root": root, "old": old, "image": rel}


def snapshot(gallery, state_dir=None) -> dict:
    """Keys, feedback and audit rows of a gallery's state, as comparable data."""
    state = open_state(gallery, state_dir, _keyring())
    try:
        return {
            "keys": [k.to_dict() for k in state.keys.list()],
            "feedback": [f.to_dict() for f in state.feedback.list()],
            "audit": [r.to_dict() for r in state.audit.list(limit=100)],
        }
    finally:
        state.close()


def test_import_carries_keys_feedback_and_the_audit_chain_and_export_brings_them_back(
    station, tmp_path, capsys, postgres_url, milvus_uri
):
    name = f"t_{uuid.uuid4().hex[:12]}"
    dest, back = tmp_path / "shared", tmp_path / "back"
    before = snapshot(station["gallery"], station["state"])
    try:
        code, out, err = run(capsys, "gallery", "import", str(station["gallery"]), "--gallery",
                             str(dest), "--database-url", postgres_url, "--vector-uri",
                             milvus_uri, "--name", name, "--state", str(station["state"]),
                             "--json")  # fmt: skip
        assert code == 0, out + err
        report = json.loads(out)
        st = report["state"]
        assert report["ok"] and st["ok"] and st["source"] == st["copy"]
        rows = {t: d["rows"] for t, d in st["copy"].items()}
        assert rows == {"api_keys": 2, "audit_log": 4, "feedback": 1, "files": 2}
        assert st["sessions_dropped"] == 1
        assert st["audit_verify"]["copy"] == {"ok": True, "rows": 4, "bad_id": None,
                                              "problem": ""}  # fmt: skip

        assert snapshot(dest) == before  # every key, feedback and audit row as it was
        state = open_state(dest, keyring=_keyring())
        try:
            assert state.location.shared and state.location.schema == name
            assert state.keys.authenticate(station["root"]).name == "root"
            assert state.keys.authenticate(station["old"]) is None
            assert state.sessions.list() == []
            fb = state.feedback.list()[0]
            assert (dest / fb.query_image).read_bytes() == b"query image one"
            assert (dest / station["image"]).read_bytes() == b"kept query"
            assert oct((dest / fb.query_image).stat().st_mode & 0o777) == "0o600"
            # Ids continue after the copied ones, and the chain goes on from the copied head.
            _, new_secret = state.keys.create("replica desk", "analyst")
            assert state.keys.get("replica desk").id == 3
            assert state.audit.append("keys.create", "root").id == 5
        finally:
            state.close()
        code, out, _ = run(capsys, "audit", "verify", "--gallery", str(dest))
        assert code == 0 and "audit log OK: 5 records" in out, out

        code, out, err = run(capsys, "gallery", "export", "--gallery", str(dest), "--out",
                             str(back))  # fmt: skip
        assert code == 0, out + err
        assert "verified: state counts and checksums match" in out
        assert "audit chain of the copy verifies: 5 records" in out
        assert (back / "state.sqlite").is_file()
        assert snapshot(back) == snapshot(dest)
        state = open_state(back)
        try:
            assert not state.location.shared
            assert state.keys.authenticate(new_secret).name == "replica desk"
            assert state.keys.authenticate(station["old"]) is None
        finally:
            state.close()
        code, out, _ = run(capsys, "audit", "verify", "--gallery", str(back))
        assert code == 0 and "audit log OK: 5 records" in out, out
    finally:
        drop_shared(BackendSpec("milvus", milvus_uri, name),
                    StoreSpec("postgresql", postgres_url, name))  # fmt: skip


def test_import_refuses_a_destination_whose_state_holds_rows(
    station, tmp_path, capsys, postgres_url, milvus_uri
):
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        state_schema.upgrade(conn, name)
    db = PortablePgDB(postgres_url, name, max_size=1)
    try:
        KeyStore(db).create("someone else", "admin")
        dest = tmp_path / "shared"
        argv = ["gallery", "import", str(station["gallery"]), "--gallery", str(dest),
                "--database-url", postgres_url, "--vector-uri", milvus_uri, "--name", name,
                "--state", str(station["state"])]  # fmt: skip
        code, out, err = run(capsys, *argv)
        assert code == 2 and "already holds rows (1 api_keys)" in err, out + err
        assert "never merged" in err and not dest.exists()  # refused before copying anything

        # The copy itself checks again, inside its transaction, and leaves the rows alone.
        src = StateLocation("files", station["state"])
        with pytest.raises(StateNotEmptyError, match="already holds rows"):
            copy_state(src, StateLocation("postgresql", tmp_path / "x", postgres_url, name))
        assert [k.name for k in KeyStore(db).list()] == ["someone else"]
        assert int(db.query("SELECT COUNT(*) FROM audit_log")[0][0]) == 0
    finally:
        db.close()
        drop_shared(BackendSpec("milvus", milvus_uri, name),
                    StoreSpec("postgresql", postgres_url, name))  # fmt: skip


def test_no_state_copies_the_gallery_alone(station, tmp_path, capsys):
    back = tmp_path / "copy"
    argv = ["gallery", "export", "--gallery", str(station["gallery"]), "--out", str(back),
            "--state", str(station["state"]), "--no-state"]  # fmt: skip
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "state not copied (--no-state)" in out
    assert not (back / "state.sqlite").exists()
