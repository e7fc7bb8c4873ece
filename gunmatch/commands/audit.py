"""`gunmatch audit verify|list|purge`: the service's hash-chained audit trail."""

from __future__ import annotations

import argparse

from gunmatch.commands.common import UsageError, emit_json, out
from gunmatch.commands.keys import add_state_args, state_dir
from gunmatch.settings import get_settings
from gunmatch.state import AuditLog


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `audit` command group."""
    p = sub.add_parser("audit", help="check and read the audit trail")
    acts = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="check the hash chain; exit 1 if a row was edited/deleted")
    add_state_args(v)
    v.set_defaults(func=cmd_verify)
    ls = acts.add_parser("list", help="newest records first")
    add_state_args(ls)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    pg = acts.add_parser("purge", help="delete kept query images past retention (rows stay)")
    add_state_args(pg)
    pg.add_argument("--days", type=int, help="retention in days (default: settings, 90)")
    pg.set_defaults(func=cmd_purge)


def cmd_verify(args: argparse.Namespace) -> int:
    """Walk the chain."""
    log = AuditLog(state_dir(args))
    try:
        report = log.verify()
    finally:
        log.close()
    if report.ok:
        out(f"audit log OK: {report.rows} records, chain intact")
        return 0
    out(f"audit log BROKEN at record {report.bad_id}: {report.problem} ({report.rows} checked)")
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    """Print recent records."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    log = AuditLog(state_dir(args))
    try:
        rows = log.list(limit=args.limit)
    finally:
        log.close()
    for r in rows:
        if args.json:
            emit_json(r.to_dict())
        else:
            out(f"{r.id:>6} {r.ts} {r.action:<14} {r.key_name:<20} {r.decision:<8} {r.query_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Apply image retention."""
    days = args.days if args.days is not None else get_settings().audit_retention_days
    log = AuditLog(state_dir(args))
    try:
        n = log.purge_images(days)
    finally:
        log.close()
    out(f"removed {n} query images older than {days} days")
    return 0
