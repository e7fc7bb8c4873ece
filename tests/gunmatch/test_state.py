"""API keys, the hash-chained audit log, feedback storage and their CLI commands."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from gunmatch.cli import main
from gunmatch.database import create_shared_state, shared_specs
from gunmatch.settings import get_settings
from gunmatch.state import (
    AuditLog,
    AuditSecretError,
    KeyStore,
    LastAdminError,
    SessionStore,
    check_name,
    load_keyring,
    open_state,
    printable,
    role_allows,
    state_db_path,
)
from gunmatch.state.audit import row_hash, row_mac
from gunmatch.state.secret import check_outside, rotate_secret
from index import Gallery
from index.feedback import FeedbackStore
from tests.helpers import state_sql


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
    log = AuditLog(tmp_path, load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"]))
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
        ("UPDATE audit_log SET decision='alert' WHERE id=2", "does not match its MAC"),
        ("UPDATE audit_log SET key_name='someone' WHERE id=3", "does not match its MAC"),
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


def test_rehashing_an_edited_row_is_caught_by_its_mac(tmp_path):
    log = _log(tmp_path)
    r = log.get(2)
    fields = {**r.to_dict(), "decision": "alert"}
    fields["results"] = r.results
    _sql(tmp_path, f"UPDATE audit_log SET decision='alert', hash='{row_hash(fields)}' WHERE id=2")
    report = log.verify()
    assert not report.ok and report.bad_id == 2


def test_query_images_are_kept_then_purged(tmp_path):
    log = _log(tmp_path, 0)
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


@pytest.fixture()
def state_gallery(tmp_path, new_galleries):
    """What `gunmatch keys|audit --gallery` point at: a bare directory (its state.sqlite) or,
    on the shared backend, a new empty shared gallery (its state in the PostgreSQL schema)."""
    if new_galleries == "embedded":
        return tmp_path
    settings = get_settings()  # the URLs new_galleries set
    gal = tmp_path / "gallery"
    specs = shared_specs(settings.database_url, settings.vector_uri)
    Gallery.create(gal, "m", 4, "photo", **specs).close()
    create_shared_state(gal)
    return gal


def test_cli_keys_and_audit(state_gallery, capsys):
    gal = state_gallery
    state = ["--gallery", str(gal)]
    assert main(["keys", "create", *state, "--role", "station", "--name", "Bus station 3"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    secret = printed[-1]
    assert secret.startswith("gm_") and " " not in secret
    store = open_state(gal, keyring=load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"]))
    assert store.keys.authenticate(secret).role == "station"
    assert main(["keys", "create", *state, "--role", "admin", "--name", "Bus station 3"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "list", *state]) == 0
    assert "Bus station 3" in capsys.readouterr().out
    assert main(["keys", "revoke", *state, "Bus station 3"]) == 0
    assert main(["keys", "revoke", *state, "nobody"]) == 1
    capsys.readouterr()
    for i in range(4):
        store.audit.append("search", "k", f"q{i}", "ab" * 32, "", "m", "clear", {"i": i})
    store.close()
    assert main(["audit", "verify", *state]) == 0
    assert "chain intact" in capsys.readouterr().out
    state_sql(gal, "DELETE FROM audit_log WHERE id=2")
    assert main(["audit", "verify", *state]) == 1
    assert "BROKEN at record 3" in capsys.readouterr().out
    assert main(["audit", "list", *state, "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", *state, "--role", "root", "--name", "x"])
    assert exc.value.code == 2


def _rechain_from(tmp_path, first_id: int, sign) -> None:
    """What a database writer can do: rewrite rows from ``first_id`` on, each linked to the
    previous one and re-hashed with ``sign(fields)``, and move the head along."""
    conn = sqlite3.connect(state_db_path(tmp_path))
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    prev = next(r["hash"] for r in rows if r["id"] == first_id - 1) if first_id > 1 else "0" * 64
    for r in rows:
        if r["id"] < first_id:
            continue
        fields = dict(r)
        if r["id"] == first_id:
            fields["decision"] = "alert"
        fields["prev_hash"] = prev
        fields["hash"] = sign(fields)
        conn.execute(
            "UPDATE audit_log SET decision=?, prev_hash=?, hash=? WHERE id=?",
            (fields["decision"], prev, fields["hash"], r["id"]),
        )
        prev = fields["hash"]
    conn.execute("UPDATE audit_head SET hash=? WHERE one=1", (prev,))
    conn.commit()
    conn.close()


def test_forgery_edit_and_recompute_every_later_hash_is_caught(tmp_path):
    log = _log(tmp_path)
    _rechain_from(tmp_path, 2, row_hash)  # the plain SHA-256 chain anyone can recompute
    report = log.verify()
    assert not report.ok and report.bad_id == 2 and "MAC" in report.problem


def test_forgery_truncate_and_rewrite_head_is_caught_by_a_checkpoint(tmp_path, capsys):
    log = _log(tmp_path)
    assert main(["audit", "checkpoint", "--gallery", str(tmp_path)]) == 0
    cp_file = tmp_path / "checkpoint.json"
    cp_file.write_text(capsys.readouterr().out)
    cp = json.loads(cp_file.read_text())
    assert cp["last_id"] == 4 and cp["rows"] == 4 and len(cp["mac"]) == 64
    head = log.get(3).hash
    _sql(tmp_path, "DELETE FROM audit_log WHERE id=4")
    _sql(tmp_path, f"UPDATE audit_head SET last_id=3, hash='{head}' WHERE one=1")
    assert log.verify().ok  # the database alone cannot tell a shorter log from a cut one
    report = log.verify(cp)
    assert not report.ok and "truncated" in report.problem
    assert main(["audit", "verify", "--gallery", str(tmp_path), "--checkpoint", str(cp_file)]) == 1
    assert "BROKEN" in capsys.readouterr().out


def test_rechaining_with_the_secret_is_caught_behind_a_checkpoint(tmp_path):
    log = _log(tmp_path)
    cp = log.checkpoint()
    log.append("search", "k", "q5", "cd" * 32, "", "m", "clear", {"i": 5})
    assert log.verify(cp).ok  # the chain still reaches the checkpoint unchanged
    _rechain_from(tmp_path, 2, lambda f: row_mac(f, log.keyring.current))  # a stolen secret
    assert log.verify().ok
    report = log.verify(cp)
    assert not report.ok and report.bad_id == 4 and "re-chained" in report.problem
    forged = {**cp, "hash": log.get(4).hash}
    assert "forged" in log.verify(forged).problem


def test_audit_secret_file_is_private_and_kept_out_of_the_gallery(tmp_path):
    path = tmp_path / "cfg" / "audit.key"
    ring = load_keyring(path)
    assert path.stat().st_mode & 0o777 == 0o600 and len(ring.current) == 32
    assert load_keyring(path).current_id == ring.current_id  # created once, then read
    rotated = rotate_secret(path)
    assert rotated.current_id != ring.current_id and rotated.get(ring.current_id) is not None
    os.chmod(path, 0o644)
    with pytest.raises(AuditSecretError, match="readable by other users"):
        load_keyring(path)
    with pytest.raises(AuditSecretError, match="inside"):
        check_outside(tmp_path / "gal" / "audit.key", tmp_path / "gal")


def test_rows_signed_before_a_rotation_still_verify(tmp_path):
    path = tmp_path / "secret" / "audit.key"
    log = AuditLog(tmp_path / "state", load_keyring(path))
    log.append("search", "k", "q1")
    log.close()
    log = AuditLog(tmp_path / "state", rotate_secret(path))
    log.append("search", "k", "q2")
    a, b = log.get(1), log.get(2)
    assert a.key_id != b.key_id and log.verify().ok
    fresh = AuditLog(tmp_path / "state", load_keyring(tmp_path / "other.key"))
    assert "unknown audit secret" in fresh.verify().problem


def test_unkeyed_rows_may_only_precede_keyed_ones(tmp_path):
    log = _log(tmp_path, 2)
    _sql(tmp_path, "UPDATE audit_log SET key_id='' WHERE id=2")
    r = log.get(2)
    _sql(tmp_path, f"UPDATE audit_log SET hash='{row_hash(r.to_dict() | {'results': r.results})}'"
                   " WHERE id=2")  # fmt: skip
    assert "downgraded" in log.verify().problem


@pytest.mark.parametrize(
    "name", ["\x1b[31mred", "two\nlines", "evil\u202etxt.exe", "  ", "x" * 101]
)
def test_key_names_must_be_printable_and_bounded(tmp_path, name):
    store = KeyStore(state_db_path(tmp_path))
    with pytest.raises(ValueError):
        store.create(name, "station")
    with pytest.raises(ValueError):
        check_name(name)


def test_keys_list_escapes_names_stored_raw(tmp_path, capsys):
    store = KeyStore(state_db_path(tmp_path))
    store.create("fine", "station")
    _sql(tmp_path, "UPDATE api_keys SET name='a\x1b[2Jb\u202ec' WHERE name='fine'")
    assert main(["keys", "list", "--gallery", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\u202e" not in printed
    assert "a\\x1b[2Jb\\u202ec" in printed and printable("ok 名") == "ok 名"


def test_the_last_admin_key_cannot_be_revoked(tmp_path):
    store = KeyStore(state_db_path(tmp_path))
    store.create("root", "admin")
    with pytest.raises(LastAdminError, match="last active admin"):
        store.revoke("root")
    store.create("second", "admin")
    assert store.revoke("root").revoked_at is not None
    with pytest.raises(LastAdminError):
        store.revoke("second")


def test_sessions_expire_are_revocable_and_end_with_their_key(tmp_path, monkeypatch):
    keys = KeyStore(state_db_path(tmp_path))
    sessions = SessionStore(state_db_path(tmp_path))
    key, _ = keys.create("web", "analyst")
    a, token_a = sessions.create(key, 60)
    _, token_b = sessions.create(key, 60)
    raw = sqlite3.connect(state_db_path(tmp_path)).execute("SELECT * FROM sessions").fetchall()
    assert token_a not in repr(raw) and sessions.authenticate(token_a).name == "web"
    assert sessions.revoke_token(token_a) and sessions.authenticate(token_a) is None
    assert [s.active() for s in sessions.list()] == [False, True]
    assert sessions.authenticate(token_b) is not None
    keys.create("root", "admin")
    keys.revoke("web")
    assert sessions.authenticate(token_b) is None  # the key's revocation ends its sessions
    _, token_c = sessions.create(keys.get("root"), 60)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    assert sessions.authenticate(token_c) is None  # expired


def test_cli_sessions_and_secret_rotation(tmp_path, capsys, monkeypatch):
    keys = KeyStore(state_db_path(tmp_path))
    key, _ = keys.create("web desk", "station")
    session, _ = SessionStore(state_db_path(tmp_path)).create(key, 60)
    state = ["--gallery", str(tmp_path)]
    assert main(["keys", "sessions", *state]) == 0
    assert "web desk" in capsys.readouterr().out
    assert main(["keys", "sessions", *state, "--revoke", str(session.id)]) == 0
    capsys.readouterr()
    assert main(["keys", "sessions", *state, "--active"]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("GUNMATCH_AUDIT_SECRET_FILE", str(tmp_path.parent / "rot" / "audit.key"))
    assert main(["audit", "checkpoint", *state]) == 0  # creates the secret on first use
    first = json.loads(capsys.readouterr().out)["key_id"]
    assert main(["audit", "rotate-secret"]) == 0
    assert main(["audit", "checkpoint", *state]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["key_id"] != first
