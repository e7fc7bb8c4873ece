"""The PostgreSQL item store on a real private cluster: migrations, the advisory write lock,
the manifest record, and `gunmatch db upgrade|status`."""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid

import numpy as np
import psycopg
import pytest

from gunmatch.commands import db as db_command
from index import Gallery, NewItem, pg_schema
from index.itemstore import StoreSpec
from index.pgstore import PgStore
from index.postgres import DatabaseError, DataValueError, Migration, migrate, redact_url

DIM = 8


def new_schema() -> str:
    return f"g_{uuid.uuid4().hex[:12]}"


def drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def version_of(url: str, schema: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return pg_schema.version(conn, schema)


def main(argv: list[str]) -> int:
    """`gunmatch db ...` through its own command group."""
    parser = argparse.ArgumentParser(prog="gunmatch")
    db_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_redact_url_drops_only_the_password():
    assert redact_url("postgresql://gm:s3cret@db.example:5432/gm") == (
        "postgresql://gm@db.example:5432/gm"
    )
    local = "postgresql://postgres@/postgres?host=/tmp/x"
    assert redact_url(local) == local


def test_migrations_apply_once_even_when_two_processes_race(postgres_url):
    schema = new_schema()
    top = pg_schema.LATEST + 1
    extra = (*pg_schema.MIGRATIONS, Migration(top, "notes", "CREATE TABLE {schema}.notes (n INT)"))
    applied: list[list[int]] = []

    def upgrade():
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            applied.append(migrate(conn, schema, pg_schema.COMPONENT, extra))

    try:
        threads = [threading.Thread(target=upgrade) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(applied) == [[], [], [], list(range(1, top + 1))]
        assert version_of(postgres_url, schema) == top
        with (
            psycopg.connect(postgres_url, autocommit=True) as conn,
            pytest.raises(DatabaseError, match="newer than this gunmatch"),
        ):
            migrate(conn, schema, pg_schema.COMPONENT, pg_schema.MIGRATIONS)
    finally:
        drop(postgres_url, schema)


def test_a_schema_behind_is_refused_until_db_upgrade(tmp_path, postgres_url, capsys, monkeypatch):
    schema = new_schema()
    try:
        spec = StoreSpec("postgresql", postgres_url, schema)
        g = Gallery.create(tmp_path / "g", "m", DIM, item_store=spec)
        g.add(
            [NewItem(vectors=np.eye(DIM, dtype=np.float32)[:1], label="a", image_bytes=b"a")], "m"
        )
        g.close()
        manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
        assert manifest["item_store"] == {
            "backend": "postgresql",
            "url": postgres_url,
            "schema": schema,
        }
        assert "vector_store" not in manifest  # PostgreSQL items, embedded FAISS index

        # A newer gunmatch with a second migration: the schema is behind until db upgrade.
        have = pg_schema.LATEST
        newer = Migration(
            have + 1, "item notes index", "CREATE INDEX items_notes ON {schema}.items (notes)"
        )
        monkeypatch.setattr(pg_schema, "MIGRATIONS", (*pg_schema.MIGRATIONS, newer))
        monkeypatch.setattr(pg_schema, "LATEST", have + 1)
        with pytest.raises(DatabaseError, match="gunmatch db upgrade"):
            Gallery.open(tmp_path / "g")
        assert main(["db", "status", "--gallery", str(tmp_path / "g"), "--json"]) == 1
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        row = next(r for r in rows if r["component"] == "gallery")  # beside "state"
        assert (row["schema"], row["version"], row["latest"]) == (schema, have, have + 1)
        assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
        new = have + 1
        assert f"{schema}: gallery version {new} of {new}; applied {new}" in capsys.readouterr().out
        assert (
            main(
                ["db", "upgrade", "--database-url", postgres_url, "--gallery", str(tmp_path / "g")]
            )
            == 0
        )
        assert f"{schema}: gallery version {new} of {new}" in capsys.readouterr().out
        g = Gallery.open(tmp_path / "g")
        assert [it.label for it in g.items()] == ["a"]
        g.close()
    finally:
        drop(postgres_url, schema)


def test_write_lock_is_exclusive_across_stores_and_dies_with_its_holder(postgres_url):
    schema = new_schema()
    a = PgStore(postgres_url, schema, create=True)
    b = PgStore(postgres_url, schema)
    try:
        with a.write_lock(), b.write_lock(blocking=False) as held:
            assert not held
        with b.write_lock(blocking=False) as held:
            assert held
        holder = psycopg.connect(postgres_url, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"gallery-write:{schema}",))
        with b.write_lock(blocking=False) as held:
            assert not held
        holder.close()  # a replica that dies drops its connection, and the lock with it
        deadline = time.monotonic() + 5  # the server ends the backend asynchronously
        while True:
            with b.write_lock(blocking=False) as held:
                if held or time.monotonic() > deadline:
                    break
            time.sleep(0.05)
        assert held
    finally:
        a.close()
        b.close()
        drop(postgres_url, schema)


def test_create_refuses_a_schema_that_holds_a_gallery(tmp_path, postgres_url):
    schema = new_schema()
    spec = StoreSpec("postgresql", postgres_url, schema)
    try:
        g = Gallery.create(tmp_path / "a", "m", DIM, item_store=spec)
        g.add(
            [NewItem(vectors=np.eye(DIM, dtype=np.float32)[:1], label="a", image_bytes=b"a")], "m"
        )
        g.close()
        with pytest.raises(Exception, match="already holds a gallery"):
            Gallery.create(tmp_path / "b", "m", DIM, item_store=spec)
    finally:
        drop(postgres_url, schema)


def test_text_postgresql_cannot_take_is_bad_input_not_a_server_error(tmp_path, postgres_url):
    """A NUL character (which SQLite stores) is refused as a ValueError, and nothing is kept."""
    schema = new_schema()
    spec = StoreSpec("postgresql", postgres_url, schema)
    try:
        with Gallery.create(tmp_path / "a", "m", DIM, item_store=spec) as g:
            vec = np.eye(DIM, dtype=np.float32)[:1]
            with pytest.raises(DataValueError, match="NUL"):
                g.add([NewItem(vectors=vec, label="a\x00b", image_bytes=b"a")], "m")
            assert len(g) == 0
            with pytest.raises(ValueError, match="NUL"):
                g.store.get_item("it\x00")
    finally:
        drop(postgres_url, schema)
