"""The gallery's PostgreSQL tables, as versioned migrations (``gunmatch db upgrade``).

The same tables as the embedded SQLite store (``index.store.SCHEMA``): items, their vectors
(the source of truth; the vector backend indexes them) and the change log the backend replays;
``shadow_vectors`` holds another model's vector for each item's original vector (the same
``vec_id``) while a promotion builds and gates it, and the outgoing model's afterwards (so a
rollback re-embeds only what was added since; see ``index.shadow``).
Append a ``Migration`` to change them; never edit one that has shipped.
"""

from __future__ import annotations

from index.postgres import Migration, applied_version, migrate, schemas_with

COMPONENT = "gallery"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "items, vectors, change log",
        """
        CREATE TABLE {schema}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO {schema}.meta (key, value) VALUES ('generation', '0');
        CREATE TABLE {schema}.items (
            item_id    TEXT PRIMARY KEY,
            label      TEXT NOT NULL,
            category   TEXT NOT NULL,
            make_model TEXT NOT NULL DEFAULT '',
            calibre    TEXT NOT NULL DEFAULT '',
            modality   TEXT NOT NULL,
            threat     INTEGER NOT NULL,
            source     TEXT NOT NULL DEFAULT '',
            notes      TEXT NOT NULL DEFAULT '',
            sha256     TEXT NOT NULL UNIQUE,
            added_at   TEXT NOT NULL,
            added_by   TEXT NOT NULL DEFAULT '',
            image_file TEXT NOT NULL DEFAULT '',
            thumb_file TEXT NOT NULL DEFAULT '',
            width      INTEGER NOT NULL DEFAULT 0,
            height     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX items_label ON {schema}.items (label);
        CREATE INDEX items_category ON {schema}.items (category);
        CREATE TABLE {schema}.vectors (
            vec_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES {schema}.items (item_id) ON DELETE CASCADE,
            variant TEXT NOT NULL DEFAULT 'original',
            vector  BYTEA NOT NULL
        );
        CREATE INDEX vectors_item ON {schema}.vectors (item_id);
        CREATE TABLE {schema}.changes (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            generation BIGINT NOT NULL,
            op         TEXT NOT NULL CHECK (op IN ('add', 'remove')),
            vec_id     BIGINT NOT NULL
        );
        CREATE INDEX changes_generation ON {schema}.changes (generation);
        """,
    ),
    Migration(
        2,
        "shadow vectors: a candidate model's vectors beside the live ones (promotion)",
        """
        CREATE TABLE {schema}.shadow_vectors (
            model_id TEXT NOT NULL,
            vec_id   BIGINT NOT NULL REFERENCES {schema}.vectors (vec_id) ON DELETE CASCADE,
            vector   BYTEA NOT NULL,
            PRIMARY KEY (model_id, vec_id)
        );
        CREATE INDEX shadow_vectors_vec ON {schema}.shadow_vectors (vec_id);
        """,
    ),
)

LATEST = len(MIGRATIONS)


def upgrade(conn, schema: str) -> list[int]:
    """Apply the gallery migrations ``schema`` lacks; returns the versions applied."""
    return migrate(conn, schema, COMPONENT, MIGRATIONS)


def gallery_schemas(conn) -> list[str]:
    """Every gallery schema in the database."""
    return schemas_with(conn, COMPONENT)


def version(conn, schema: str) -> int:
    """The gallery migration version ``schema`` is at (0: none)."""
    return applied_version(conn, schema, COMPONENT)
