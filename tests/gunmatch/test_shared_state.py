"""The service state on both stores: the embedded ``state.sqlite`` and a shared gallery's
PostgreSQL schema (a real private cluster): keys, sessions, the audit chain, feedback, the
reload generation, migrations by `gunmatch db upgrade`, and several "replicas" (separate
connection pools) at once."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from gunmatch.cli import main
from gunmatch.state import (
    AuditLog,
    KeyStore,
    LastAdminError,
    SessionStore,
    load_keyring,
    open_state,
    state_db_path,
    state_location,
)
from gunmatch.state import pg_schema as state_schema
from index import Gallery
from index import pg_schema as gallery_schema
from index.feedback import FeedbackStore
from index.itemstore import StoreSpec
from index.postgres import DatabaseError, PortablePgDB
from tests.servers import drop_shared


def _keyring():
    return load_keyring(os.environ["GUNMATCH_AUDIT_SECRET_FILE"])


class Backend:
    """One place the state tables live, with raw SQL access for tampering."""

    def __init__(self, kind: str, tmp_path: Path, url: str = "") -> None:
        self.kind, self.tmp, self.url = kind, tmp_path, url
        self.schema = f"s_{uuid.uuid4().hex[:12]}"
        self._dbs: list = []
        if kind == "postgresql":
            with psycopg.connect(url, autocommit=True) as conn:
                state_schema.upgrade(conn, self.schema)

    def source(self):
        """What a store is opened on: the SQLite path, or a new pool (another 'replica')."""
        if self.kind == "sqlite":
            return state_db_path(self.tmp)
        db = PortablePgDB(self.url, self.schema, max_size=4)
        self._dbs.append(db)
        return db

    def audit(self) -> AuditLog:
        db = None if self.kind == "sqlite" else self.source()
        return AuditLog(self.tmp, _keyring(), db=db)

    def sql(self, stmt: str) -> None:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(state_db_path(self.tmp))
            conn.execute(stmt)
            conn.commit()
            conn.close()
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET search_path={self.schema}")
            conn.execute(stmt)

    def close(self) -> None:
        for db in self._dbs:
            db.close()
        if self.kind == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    b = Backend(request.param, tmp_path, url)
    yield b
    b.close()


def test_keys_and_sessions_behave_the_same_on_both_stores(backend):
    keys, sessions = KeyStore(backend.source()), SessionStore(backend.source())
    rec, secret = keys.create("Bus station 3", "station")
    assert keys.authenticate(secret).name == "Bus station 3" and isinstance(rec.id, int)
    with pytest.raises(ValueError, match="already exists"):
        keys.create("Bus station 3", "admin")
    keys.create("root", "admin")
    with pytest.raises(LastAdminError):
        keys.revoke("root")
    key, token = sessions.create(keys.get("Bus station 3"), 60)
    assert sessions.authenticate(token).name == "Bus station 3"
    assert [s.key_name for s in sessions.list(active_only=True)] == ["Bus station 3"]
    keys.revoke("Bus station 3")
    assert keys.authenticate(secret) is None and sessions.authenticate(token) is None
    with pytest.raises(KeyError):
        keys.revoke("nobody")
    _, again = keys.create("Bus station 3", "station", replace=True)
    assert keys.authenticate(again).active
    assert sessions.revoke(key.id).revoked_at is not None


def test_a_key_revoked_through_one_replica_is_refused_by_another_at_once(backend):
    a, b = KeyStore(backend.source()), KeyStore(backend.source())
    sa, sb = SessionStore(backend.source()), SessionStore(backend.source())
    a.create("root", "admin")
    _, secret = a.create("desk", "analyst")
    _, token = sa.create(a.get("desk"), 60)
    assert b.authenticate(secret).name == "desk" and sb.authenticate(token) is not None
    a.revoke("desk")
    assert b.authenticate(secret) is None  # the next check reads the database
    assert sb.authenticate(token) is None


def test_audit_chain_on_both_stores_detects_edits_and_truncation(backend):
    log = backend.audit()
    for i in range(4):
        log.append("search", "k", f"q{i}", "ab" * 32, "", "m", "clear", {"i": i})
    assert log.verify().ok and log.verify().rows == 4
    first = log.list(limit=10)[-1].id
    cp = log.checkpoint()
    assert cp["rows"] == 4 and cp["last_id"] == first + 3
    backend.sql(f"UPDATE audit_log SET decision='alert' WHERE id={first + 1}")
    report = log.verify()
    assert not report.ok and report.bad_id == first + 1 and "MAC" in report.problem
    backend.sql(f"UPDATE audit_log SET decision='clear' WHERE id={first + 1}")
    assert log.verify().ok
    backend.sql(f"DELETE FROM audit_log WHERE id={first + 3}")
    assert "newest rows missing" in log.verify().problem
    head = log.get(first + 2).hash
    backend.sql(f"UPDATE audit_head SET last_id={first + 2}, hash='{head}' WHERE one=1")
    assert log.verify().ok and "truncated" in log.verify(cp).problem


def test_an_empty_chain_verifies_and_checkpoints_on_both_stores(backend):
    log = backend.audit()
    assert log.verify().ok and log.verify().rows == 0
    assert log.checkpoint()["last_id"] == 0


@pytest.mark.parametrize("appenders", [2])
def test_concurrent_appends_from_two_replicas_never_fork_the_chain(backend, appenders):
    logs = [backend.audit() for _ in range(appenders)]
    per, errors = 25, []

    def work(log: AuditLog, n: int) -> None:
        try:
            for i in range(per):
                log.append("search", f"replica{n}", f"q{n}-{i}", results={"i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs) for _ in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = logs[0].verify()
    assert report.ok, report
    assert report.rows == appenders * 2 * per
    rows = logs[1].list(limit=1000)
    assert len({r.prev_hash for r in rows}) == len(rows)  # every row links a different parent


def test_feedback_on_both_stores(backend):
    store = FeedbackStore(backend.source())
    a = store.add("analyst", "q1", "ab", "feedback/ab.png", "item1", "correct")
    b = store.add("analyst", "q2", "cd", "", "item2", "wrong", "glock_slide", "new1")
    assert [f.id for f in store.list()] == [a.id, b.id]
    assert store.list(verdict="wrong")[0].correct_label == "glock_slide"
    assert store.count() == 2 and store.get(b.id).added_item_id == "new1"
    assert store.list(limit=1, offset=1)[0].id == b.id
    with pytest.raises(ValueError, match="verdict"):
        store.add("analyst", "q3", "ef", "", "item", "maybe")


# -- a shared gallery's state: location, migrations, CLI ---------------------------------------
@pytest.fixture()
def shared_gallery(tmp_path, postgres_url):
    """A gallery whose items live in PostgreSQL (vectors in the embedded FAISS file)."""
    name = f"g_{uuid.uuid4().hex[:12]}"
    spec = StoreSpec("postgresql", postgres_url, name)
    Gallery.create(tmp_path / "gal", "m", 4, "photo", item_store=spec).close()
    yield tmp_path / "gal", name
    drop_shared(None, spec, postgres_url)


def run(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_shared_gallery_state_needs_db_upgrade_then_lives_in_its_schema(
    shared_gallery, capsys, postgres_url
):
    gal, name = shared_gallery
    loc = state_location(gal)
    assert loc.shared and loc.schema == name and name in loc.describe()
    with pytest.raises(DatabaseError, match="run 'gunmatch db upgrade'"):
        open_state(gal)  # never migrated at open time
    code, out = run(capsys, "keys", "create", "--gallery", str(gal), "--role", "admin",
                    "--name", "root")  # fmt: skip
    assert code == 1 and "gunmatch db upgrade" in out
    code, out = run(capsys, "db", "status", "--database-url", postgres_url, "--gallery", str(gal))
    assert code == 1 and f"{name}: state version 0 of {state_schema.LATEST}" in out
    code, out = run(capsys, "db", "upgrade", "--database-url", postgres_url)
    assert code == 0 and f"{name}: state version 1 of 1; applied 1" in out, out
    code, out = run(capsys, "db", "status", "--database-url", postgres_url, "--gallery", str(gal))
    latest = gallery_schema.LATEST
    assert code == 0 and f"{name}: gallery version {latest} of {latest}" in out

    code, out = run(capsys, "keys", "create", "--gallery", str(gal), "--role", "admin",
                    "--name", "root")  # fmt: skip
    assert code == 0, out
    secret = out.strip().splitlines()[-1]
    assert not (gal / "state.sqlite").exists()  # nothing written beside the gallery
    state = open_state(gal, keyring=_keyring())
    try:
        assert state.keys.authenticate(secret).name == "root"
        for i in range(3):
            state.audit.append("search", "root", f"q{i}")
        gen = state.reload_generation()
        assert state.request_reload() == gen + 1 == state.reload_generation()
    finally:
        state.close()
    code, out = run(capsys, "audit", "verify", "--gallery", str(gal))
    assert code == 0 and "3 records, chain intact" in out
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {name}.audit_log SET key_name='x' WHERE query_id='q1'")
    code, out = run(capsys, "audit", "verify", "--gallery", str(gal))
    assert code == 1 and "BROKEN" in out
    code, out = run(capsys, "keys", "list", "--gallery", str(gal), "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["name"] == "root"


def test_embedded_galleries_keep_their_state_in_files(tmp_path):
    Gallery.create(tmp_path / "gal", "m", 4, "photo").close()
    loc = state_location(tmp_path / "gal", tmp_path / "state")
    assert loc.backend == "files" and loc.state_dir == tmp_path / "state"
    state = open_state(tmp_path / "gal", tmp_path / "state")
    try:
        state.keys.create("root", "admin")
        assert state.reload_generation() is None and state.request_reload() is None
    finally:
        state.close()
    assert (tmp_path / "state" / "state.sqlite").is_file()


def test_model_reload_bumps_a_shared_gallery_generation_and_promotion_is_refused(
    shared_gallery, capsys, postgres_url
):
    gal, _ = shared_gallery
    assert run(capsys, "db", "upgrade", "--database-url", postgres_url)[0] == 0
    state = open_state(gal)
    try:
        before = state.reload_generation()
        code, out = run(capsys, "model", "reload", "--gallery", str(gal))
        assert code == 0 and f"reload generation {before + 1}" in out, out
        assert state.reload_generation() == before + 1
    finally:
        state.close()
    manifest = (gal / "manifest.json").read_text()
    for argv in (["promote", "some-model"], ["rollback"]):
        code, out = run(capsys, "model", *argv, "--gallery", str(gal), "--registry",
                        str(gal.parent / "reg"))  # fmt: skip
        # Items on PostgreSQL but vectors in FAISS: no in-place switch for this mix.
        assert code == 1 and "shared gallery" in out and "Milvus" in out, out
    assert (gal / "manifest.json").read_text() == manifest


def test_model_reload_on_an_embedded_gallery_says_how_to_reload_it(tmp_path, capsys):
    Gallery.create(tmp_path / "gal", "m", 4, "photo").close()
    code, out = run(capsys, "model", "reload", "--gallery", str(tmp_path / "gal"))
    assert code == 2 and "kill -HUP" in out
