"""API keys, the hash-chained audit log, feedback storage and their CLI commands."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from gunmatch.cli import main
from gunmatch.state import AuditLog, KeyStore, role_allows, state_db_path
from gunmatch.state.audit import row_hash
from index.feedback import FeedbackStore


def test_keys_are_hashed_roles_checked_and_revocable(tmp_path):
    store = KeyStore(state_db_path(tmp_path))
    rec, secret = store.create("Bus station 3", "station")
    assert store.authenticate(secret).name == "Bus station 3"
    raw = sqlite3.connect(state_db_path(tmp_path)).execute("SELECT * FROM api_keys").fetchall()
    assert secret not in repr(raw)  # only the hash is stored
    with pytest.raises(ValueError, match="already exists"):
        store.create("Bus station 3", "admin")
    with pytest.raises(ValueError, match="unknown role"):
        store.create("x", "root")
    assert role_allows("admin", "analyst") and not role_allows("station", "analyst")
    store.revoke("Bus station 3")
    assert store.authenticate(secret) is None
    _, again = store.create("Bus station 3", "station", replace=True)
    assert store.authenticate(again) and store.authenticate(secret) is None
    with pytest.raises(KeyError):
        store.revoke("nobody")
    assert store.authenticate("") is None and store.authenticate("gm_nope") is None


def _log(tmp_path, n=4) -> AuditLog:
    log = AuditLog(tmp_path)
    for i in range(n):
        log.append("search", "k", f"q{i}", "ab" * 32, "", "m", "clear", {"i": i})
    return log


def _sql(tmp_path, stmt):
    conn = sqlite3.connect(state_db_path(tmp_path))
    conn.execute(stmt)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "tamper,problem",
    [
        ("UPDATE audit_log SET decision='alert' WHERE id=2", "does not match its hash"),
        ("UPDATE audit_log SET key_name='someone' WHERE id=3", "does not match its hash"),
        ("DELETE FROM audit_log WHERE id=2", "link to previous row broken"),
        ("DELETE FROM audit_log WHERE id=4", "newest rows missing"),
    ],
)
def test_chain_detects_edits_and_deletions(tmp_path, tamper, problem):
    log = _log(tmp_path)
    assert log.verify().ok and log.verify().rows == 4
    _sql(tmp_path, tamper)
    report = log.verify()
    assert not report.ok and problem in report.problem


def test_rehashing_an_edited_row_still_breaks_the_next_link(tmp_path):
    log = _log(tmp_path)
    r = log.get(2)
    fields = {**r.to_dict(), "decision": "alert"}
    fields["results"] = r.results
    _sql(tmp_path, f"UPDATE audit_log SET decision='alert', hash='{row_hash(fields)}' WHERE id=2")
    report = log.verify()
    assert not report.ok and report.bad_id == 3


def test_query_images_are_kept_then_purged(tmp_path):
    log = AuditLog(tmp_path)
    sha, rel = log.store_image(b"image-bytes", ".png")
    rec = log.append("search", "k", "q1", sha, rel)
    assert log.image_path(rec).read_bytes() == b"image-bytes"
    old = time.time() - 91 * 86400
    os.utime(tmp_path / rel, (old, old))
    assert log.purge_images(90) == 1
    assert log.image_path(rec) is None and log.verify().ok  # rows survive, chain intact


def test_feedback_store(tmp_path):
    store = FeedbackStore(state_db_path(tmp_path))
    a = store.add("analyst", "q1", "ab", "feedback/ab.png", "item1", "correct")
    b = store.add("analyst", "q2", "cd", "", "item2", "wrong", "glock_slide", "new1")
    assert [f.id for f in store.list()] == [a.id, b.id]
    assert store.list(verdict="wrong")[0].correct_label == "glock_slide"
    assert store.count() == 2 and store.get(b.id).added_item_id == "new1"
    with pytest.raises(ValueError, match="verdict"):
        store.add("analyst", "q3", "ef", "", "item", "maybe")


def test_cli_keys_and_audit(tmp_path, capsys):
    state = ["--gallery", str(tmp_path)]
    assert main(["keys", "create", *state, "--role", "station", "--name", "Bus station 3"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    secret = printed[-1]
    assert secret.startswith("gm_") and " " not in secret
    assert KeyStore(state_db_path(tmp_path)).authenticate(secret).role == "station"
    assert main(["keys", "create", *state, "--role", "admin", "--name", "Bus station 3"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "list", *state]) == 0
    assert "Bus station 3" in capsys.readouterr().out
    assert main(["keys", "revoke", *state, "Bus station 3"]) == 0
    assert main(["keys", "revoke", *state, "nobody"]) == 1
    capsys.readouterr()
    _log(tmp_path).close()
    assert main(["audit", "verify", *state]) == 0
    assert "chain intact" in capsys.readouterr().out
    _sql(tmp_path, "DELETE FROM audit_log WHERE id=2")
    assert main(["audit", "verify", *state]) == 1
    assert "BROKEN at record 3" in capsys.readouterr().out
    assert main(["audit", "list", *state, "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", *state, "--role", "root", "--name", "x"])
    assert exc.value.code == 2
