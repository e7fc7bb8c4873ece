"""The shared PostgreSQL database: which schemas it holds and bringing them up to date.

``gunmatch db upgrade`` applies every pending migration (each gallery schema's, see
``index.pg_schema``); a process never migrates on its own when it opens a gallery, it refuses
a schema that is behind, so replicas of two versions never race to change one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from index import pg_schema
from index.backends import BackendSpec
from index.itemstore import StoreSpec
from index.postgres import PgDB, check_identifier


@dataclass
class SchemaStatus:
    """One schema's component, version before and after, and the migrations applied."""

    schema: str
    component: str
    version: int
    latest: int
    applied: list[int]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def gallery_store_spec(gallery_dir: Path) -> StoreSpec:
    """The item store a gallery directory's manifest records."""
    manifest = json.loads((Path(gallery_dir) / "manifest.json").read_text())
    return StoreSpec.from_manifest(manifest)


def _db(url: str) -> PgDB:
    return PgDB(url, "public", min_size=1, max_size=1)


def status(url: str, schemas: list[str] | None = None) -> list[SchemaStatus]:
    """Versions of the gallery schemas in the database (or of the named ones)."""
    db = _db(url)
    try:
        with db.connection() as conn:
            names = schemas if schemas is not None else pg_schema.gallery_schemas(conn)
            rows = []
            for s in names:
                version = pg_schema.version(conn, check_identifier(s))
                rows.append(SchemaStatus(s, pg_schema.COMPONENT, version, pg_schema.LATEST, []))
            return rows
    finally:
        db.close()


def upgrade(url: str, schemas: list[str] | None = None) -> list[SchemaStatus]:
    """Apply pending migrations to every gallery schema in the database (or the named ones)."""
    db = _db(url)
    try:
        with db.connection() as conn:
            names = schemas if schemas is not None else pg_schema.gallery_schemas(conn)
            done = []
            for s in names:
                before = pg_schema.version(conn, check_identifier(s))
                applied = pg_schema.upgrade(conn, s)
                done.append(SchemaStatus(s, pg_schema.COMPONENT, before, pg_schema.LATEST, applied))
            return done
    finally:
        db.close()


def new_shared_name() -> str:
    """A fresh name for a gallery's PostgreSQL schema and Milvus collection."""
    return f"gallery_{uuid.uuid4().hex[:12]}"


def shared_specs(database_url: str = "", vector_uri: str = "", name: str | None = None) -> dict:
    """``Gallery.create`` keyword arguments for a shared gallery: its items in a PostgreSQL
    schema when ``database_url`` is set, its vectors in a Milvus collection when ``vector_uri``
    is (one name for both); empty settings leave the embedded defaults."""
    name = check_identifier(name or new_shared_name())
    specs: dict = {}
    if database_url:
        specs["item_store"] = StoreSpec("postgresql", database_url, name)
    if vector_uri:
        specs["vector_store"] = BackendSpec("milvus", vector_uri, name)
    return specs
