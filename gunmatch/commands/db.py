"""`gunmatch db upgrade|status`: versioned schema migrations of the shared PostgreSQL database."""

from __future__ import annotations

import argparse

from gunmatch import database
from gunmatch.commands.common import UsageError, emit_json, out
from gunmatch.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `db` command group."""
    p = sub.add_parser("db", help="PostgreSQL schema migrations (shared galleries)")
    ds = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("upgrade", cmd_upgrade, "apply pending migrations"),
        ("status", cmd_status, "show each schema's migration version"),
    ):
        c = ds.add_parser(name, help=text)
        c.add_argument("--database-url", help="PostgreSQL URL (default GUNMATCH_DATABASE_URL)")
        c.add_argument(
            "--gallery",
            help="only this gallery directory's schema (its manifest names URL and schema)",
        )
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)


def _target(args: argparse.Namespace) -> tuple[str, list[str] | None]:
    url = args.database_url or get_settings().database_url
    schemas = None
    if args.gallery:
        spec = database.gallery_store_spec(args.gallery)
        if spec.backend != "postgresql":
            raise UsageError(
                f"gallery {args.gallery} keeps its items in {spec.backend}, not PostgreSQL"
            )
        url, schemas = url or spec.url, [spec.schema]
    if not url:
        raise UsageError("--database-url URL is required (or set GUNMATCH_DATABASE_URL)")
    return url, schemas


def _show(rows: list[database.SchemaStatus], as_json: bool) -> None:
    for r in rows:
        if as_json:
            emit_json(r.to_dict())
            continue
        now = r.version + len(r.applied)
        applied = f"; applied {', '.join(map(str, r.applied))}" if r.applied else ""
        out(f"{r.schema}: {r.component} version {now} of {r.latest}{applied}")
    if not rows and not as_json:
        out("no gallery schemas in this database")


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Apply every pending migration."""
    url, schemas = _target(args)
    _show(database.upgrade(url, schemas), args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show versions; exit 1 when a schema is behind."""
    url, schemas = _target(args)
    rows = database.status(url, schemas)
    _show(rows, args.json)
    return 1 if any(r.version < r.latest for r in rows) else 0
