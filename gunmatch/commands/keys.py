"""`gunmatch keys create|list|revoke|sessions`: API keys and web sessions in the service's
state database (``state.sqlite``, or a shared gallery's PostgreSQL schema)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gunmatch.commands.common import add_gallery_arg, emit_json, gallery_dir, out
from gunmatch.settings import get_settings
from gunmatch.state import ROLES, ServiceState, open_state, printable
from gunmatch.state.secret import AuditKeyring


def state_dir(args: argparse.Namespace) -> Path:
    """--state DIR, else GUNMATCH_STATE_DIR, else the gallery directory."""
    chosen = args.state or get_settings().state_dir
    return Path(chosen) if chosen else gallery_dir(args)


def service_state(args: argparse.Namespace, keyring: AuditKeyring | None = None) -> ServiceState:
    """The state of --gallery: its PostgreSQL schema for a shared gallery, else the files
    in --state (default the gallery directory)."""
    return open_state(gallery_dir(args), state_dir(args), keyring)


def add_state_args(p: argparse.ArgumentParser) -> None:
    """--gallery and --state."""
    add_gallery_arg(p)
    p.add_argument("--state", type=Path, help="state directory (default: the gallery directory)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `keys` command group."""
    p = sub.add_parser("keys", help="manage API keys (roles: station, analyst, admin)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = ks.add_parser("create", help="create a key; it is printed once, alone on the last line")
    add_state_args(c)
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", required=True, help='who uses it, e.g. "Bus station 3"')
    c.add_argument("--replace", action="store_true", help="replace a key of the same name")
    c.set_defaults(func=cmd_create)
    ls = ks.add_parser("list", help="list keys (never their secrets)")
    add_state_args(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    r = ks.add_parser("revoke", help="revoke a key by name")
    add_state_args(r)
    r.add_argument("name")
    r.set_defaults(func=cmd_revoke)
    se = ks.add_parser("sessions", help="list web sign-in sessions; --revoke ID ends one")
    add_state_args(se)
    se.add_argument("--active", action="store_true", help="only sessions still valid")
    se.add_argument("--revoke", type=int, metavar="ID", help="end the session with this id")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_sessions)


def cmd_create(args: argparse.Namespace) -> int:
    """Create a key and print it."""
    state = service_state(args)
    try:
        record, secret = state.keys.create(args.name, args.role, replace=args.replace)
    finally:
        state.close()
    name = printable(record.name)
    out(f"created {record.role} key '{name}'; store it now, it is not shown again:")
    out(secret)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List keys."""
    state = service_state(args)
    try:
        keys = state.keys.list()
    finally:
        state.close()
    if args.json:
        for k in keys:
            emit_json(k.to_dict())
        return 0
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at}"
        used = k.last_used_at or "never"
        name = printable(k.name)
        out(f"{name:<24} {k.role:<8} {k.prefix}…  created {k.created_at}  used {used}  {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke a key and end its web sessions."""
    state = service_state(args)
    try:
        k = state.keys.revoke(args.name)
        ended = state.sessions.revoke_key(k.id)
    finally:
        state.close()
    out(f"revoked '{printable(k.name)}' ({k.role}) at {k.revoked_at}; ended {ended} sessions")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """List sessions, or end one."""
    state = service_state(args)
    try:
        if args.revoke is not None:
            s = state.sessions.revoke(args.revoke)
            out(f"ended session {s.id} of '{printable(s.key_name)}'")
            return 0
        rows = state.sessions.list(active_only=args.active)
    finally:
        state.close()
    for s in rows:
        if args.json:
            emit_json(s.to_dict())
            continue
        state = "active" if s.active() else ("revoked" if s.revoked_at else "expired")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.created_at))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.expires_at))
        out(f"{s.id:>6} {printable(s.key_name):<24} created {created}  expires {expires}  {state}")
    return 0
