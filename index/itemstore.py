"""Where a gallery keeps its items, vectors and change log: the item store and its registry.

``sqlite`` (embedded, the default: ``DIR/gallery.sqlite``) and ``postgresql`` (a schema in a
shared PostgreSQL database, one per gallery). Both offer the same methods (``index.store.Store``
is the reference); the manifest's ``item_store`` record says which one a gallery uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.pgstore import PgStore
from index.postgres import redact_url
from index.store import Store

DEFAULT_STORE = "sqlite"
SQLITE_FILE = "gallery.sqlite"


@dataclass(frozen=True)
class StoreSpec:
    """Which item store a gallery uses and where (``manifest["item_store"]``)."""

    backend: str = DEFAULT_STORE
    url: str = ""
    schema: str = ""

    def to_dict(self) -> dict:
        """The manifest record; the URL is written without its password (libpq reads that
        from PGPASSWORD or ~/.pgpass)."""
        return {"backend": self.backend, "url": redact_url(self.url), "schema": self.schema}

    @classmethod
    def from_manifest(cls, manifest: dict) -> StoreSpec:
        """The spec a manifest records; none means today's embedded SQLite."""
        rec = manifest.get("item_store") or {}
        return cls(rec.get("backend", DEFAULT_STORE), rec.get("url", ""), rec.get("schema", ""))


Opener = Callable[[StoreSpec, Path, bool], object]
_REGISTRY: dict[str, Opener] = {}


def register_item_store(name: str) -> Callable[[Opener], Opener]:
    """Register ``open(spec, gallery_root, create) -> store`` under ``name``."""

    def deco(fn: Opener) -> Opener:
        if name in _REGISTRY:
            raise ValueError(f"item store {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_item_stores() -> list[str]:
    """Registered item store names."""
    return sorted(_REGISTRY)


def open_item_store(spec: StoreSpec, root: Path, create: bool = False):
    """Open (or, with ``create``, set up) the item store ``spec`` names for gallery ``root``."""
    if spec.backend not in _REGISTRY:
        known = ", ".join(list_item_stores())
        raise ValueError(f"unknown item store {spec.backend!r}; known: {known}")
    return _REGISTRY[spec.backend](spec, Path(root), create)


@register_item_store("sqlite")
def _sqlite(spec: StoreSpec, root: Path, create: bool) -> Store:
    return Store(root / SQLITE_FILE)


@register_item_store("postgresql")
def _postgresql(spec: StoreSpec, root: Path, create: bool) -> PgStore:
    if not spec.url or not spec.schema:
        raise ValueError("a postgresql item store needs a database URL and a schema name")
    return PgStore(spec.url, spec.schema, create=create)
