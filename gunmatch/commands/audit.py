"""`gunmatch audit verify|checkpoint|rotate-secret|list|purge`: the service's keyed audit chain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gunmatch.commands.common import UsageError, emit_json, out
from gunmatch.commands.keys import add_state_args, service_state, state_dir
from gunmatch.settings import get_settings
from gunmatch.state import ServiceState, load_keyring, printable
from gunmatch.state.secret import check_outside, rotate_secret


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `audit` command group."""
    p = sub.add_parser("audit", help="check and read the audit trail")
    acts = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = acts.add_parser("verify", help="check the keyed chain; exit 1 if a row was edited/deleted")
    add_state_args(v)
    v.add_argument(
        "--checkpoint",
        type=Path,
        help="a file from `audit checkpoint`: also detect truncation or re-chaining behind it",
    )
    v.set_defaults(func=cmd_verify)
    cp = acts.add_parser(
        "checkpoint", help="print the chain's head and its MAC as JSON (file it elsewhere)"
    )
    add_state_args(cp)
    cp.set_defaults(func=cmd_checkpoint)
    rs = acts.add_parser(
        "rotate-secret",
        help="add a new audit secret (signs rows from now on; older ones stay to verify)",
    )
    rs.set_defaults(func=cmd_rotate_secret)
    ls = acts.add_parser("list", help="newest records first")
    add_state_args(ls)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    pg = acts.add_parser("purge", help="delete kept query images past retention (rows stay)")
    add_state_args(pg)
    pg.add_argument("--days", type=int, help="retention in days (default: settings, 90)")
    pg.set_defaults(func=cmd_purge)


def open_log(args: argparse.Namespace, create_secret: bool = False) -> ServiceState:
    """The state holding the audit log of --gallery (a shared gallery's in PostgreSQL) or
    --state, keyed by the secret file in settings: use ``.audit``, then ``close()``."""
    sdir = state_dir(args)
    secret_file = get_settings().audit_secret_file
    check_outside(secret_file, sdir)
    return service_state(args, load_keyring(secret_file, create=create_secret))


def _read_checkpoint(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a checkpoint (expected a JSON object)")
    return data


def cmd_verify(args: argparse.Namespace) -> int:
    """Walk the chain (up to and past a filed checkpoint, if given)."""
    checkpoint = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    state = open_log(args)
    try:
        report = state.audit.verify(checkpoint)
    finally:
        state.close()
    if report.ok:
        upto = f", reaches checkpoint row {checkpoint['last_id']}" if checkpoint else ""
        out(f"audit log OK: {report.rows} records, chain intact{upto}")
        return 0
    out(f"audit log BROKEN at record {report.bad_id}: {report.problem} ({report.rows} checked)")
    return 1


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Print a signed checkpoint of the head."""
    state = open_log(args, create_secret=True)
    try:
        emit_json(state.audit.checkpoint())
    finally:
        state.close()
    return 0


def cmd_rotate_secret(args: argparse.Namespace) -> int:
    """Append a fresh secret to the secret file."""
    path = get_settings().audit_secret_file
    ring = rotate_secret(path)
    out(f"new audit secret {ring.current_id} in {path}; keep the older lines to verify old rows")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print recent records."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    state = open_log(args)
    try:
        rows = state.audit.list(limit=args.limit)
    finally:
        state.close()
    for r in rows:
        if args.json:
            emit_json(r.to_dict())
        else:
            name = printable(r.key_name)
            out(f"{r.id:>6} {r.ts} {r.action:<14} {name:<20} {r.decision:<8} {r.query_id}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Apply image retention."""
    days = args.days if args.days is not None else get_settings().audit_retention_days
    state = open_log(args)
    try:
        n = state.audit.purge_images(days)
    finally:
        state.close()
    out(f"removed {n} query images older than {days} days")
    return 0
