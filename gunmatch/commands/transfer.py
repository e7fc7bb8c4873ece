"""`gunmatch gallery import|export`: move a gallery between an embedded directory and a shared
PostgreSQL + Milvus deployment, with counts and a checksum verified at the end."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import UsageError, emit_json, gallery_dir, out
from gunmatch.database import create_shared_state, shared_specs
from gunmatch.settings import get_settings
from index.transfer import TransferReport, copy_gallery


def register_actions(gs: argparse._SubParsersAction) -> None:
    """Add `import` and `export` to the `gallery` command group."""
    p = gs.add_parser(
        "import",
        help="copy an embedded gallery directory into PostgreSQL + Milvus (verified)",
    )
    p.add_argument("src", type=Path, help="the embedded gallery directory to copy")
    p.add_argument("--gallery", type=Path, required=True, help="new gallery directory")
    p.add_argument("--database-url", help="PostgreSQL URL (default GUNMATCH_DATABASE_URL)")
    p.add_argument("--vector-uri", help="Milvus URI (default GUNMATCH_VECTOR_URI)")
    p.add_argument("--name", help="schema and collection name (default gallery_<random>)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = gs.add_parser(
        "export",
        help="copy a gallery (e.g. a PostgreSQL + Milvus one) into an embedded directory",
    )
    p.add_argument("--gallery", type=Path, help="the gallery to copy (default GUNMATCH_GALLERY)")
    p.add_argument("--out", type=Path, required=True, help="new embedded gallery directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


def _report(report: TransferReport, dest: Path, as_json: bool) -> int:
    if as_json:
        emit_json({"gallery": str(dest), **report.to_dict()})
    else:
        s, c = report.source, report.copy
        out(f"source: {s.items} items, {s.vectors} vectors, sha256 {s.sha256}")
        out(f"copy:   {c.items} items, {c.vectors} vectors, sha256 {c.sha256}")
        out(f"vector index of the copy holds {report.indexed} vectors")
        out("verified: counts and checksum match" if report.ok else "MISMATCH: do not use the copy")
    return 0 if report.ok else 1


def cmd_import(args: argparse.Namespace) -> int:
    """Embedded directory -> PostgreSQL + Milvus."""
    settings = get_settings()
    url = args.database_url or settings.database_url
    uri = args.vector_uri or settings.vector_uri
    if not url and not uri:
        raise UsageError(
            "import needs --database-url and/or --vector-uri "
            "(or GUNMATCH_DATABASE_URL / GUNMATCH_VECTOR_URI)"
        )
    specs = shared_specs(url, uri, args.name)
    report = copy_gallery(args.src, args.gallery, **specs)
    if report.ok:
        create_shared_state(args.gallery)  # empty: keys are created anew for the replicas
    return _report(report, args.gallery, args.json)


def cmd_export(args: argparse.Namespace) -> int:
    """Any gallery -> an embedded directory (FAISS + SQLite)."""
    src = gallery_dir(args)
    return _report(copy_gallery(src, args.out), args.out, args.json)
