"""The shared PostgreSQL database: which schemas it holds and bringing them up to date.

``gunmatch db upgrade`` applies every pending migration (each gallery schema's components:
``gallery``, see ``index.pg_schema``, and ``state``, see ``gunmatch.state.pg_schema``); a
process never migrates on its own when it opens a gallery or its state, it refuses a schema
that is behind, so replicas of two versions never race to change one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from gunmatch.state import pg_schema as state_schema
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


# Every component a gallery schema holds, in the order they are brought up to date.
COMPONENTS = (pg_schema, state_schema)


def _names(conn, schemas: list[str] | None) -> list[str]:
    if schemas is not None:
        return [check_identifier(s) for s in schemas]
    found = set(pg_schema.gallery_schemas(conn)) | set(state_schema.state_schemas(conn))
    return sorted(found)


def status(url: str, schemas: list[str] | None = None) -> list[SchemaStatus]:
    """Versions of every component of the gallery schemas in the database (or named ones)."""
    db = _db(url)
    try:
        with db.connection() as conn:
            rows = []
            for s in _names(conn, schemas):
                for comp in COMPONENTS:
                    version = comp.version(conn, s)
                    rows.append(SchemaStatus(s, comp.COMPONENT, version, comp.LATEST, []))
            return rows
    finally:
        db.close()


def upgrade(url: str, schemas: list[str] | None = None) -> list[SchemaStatus]:
    """Apply pending migrations of every component to every gallery schema in the database
    (or the named ones): a gallery schema made before the service state moved into
    PostgreSQL gets its state tables here."""
    db = _db(url)
    try:
        with db.connection() as conn:
            done = []
            for s in _names(conn, schemas):
                for comp in COMPONENTS:
                    before = comp.version(conn, s)
                    applied = comp.upgrade(conn, s)
                    done.append(SchemaStatus(s, comp.COMPONENT, before, comp.LATEST, applied))
            return done
    finally:
        db.close()


def create_shared_state(gallery_dir: Path) -> list[int]:
    """Create the service state tables of a gallery just made shared (build, import): a new
    gallery starts complete, as ``gunmatch db upgrade`` would leave it. Nothing for a gallery
    kept in embedded files; returns the migration versions applied."""
    spec = gallery_store_spec(gallery_dir)
    if spec.backend != "postgresql":
        return []
    db = _db(spec.url)
    try:
        with db.connection() as conn:
            return state_schema.upgrade(conn, spec.schema)
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
