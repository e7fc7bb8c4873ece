"""`gunmatch gallery import|export`: move a gallery between an embedded directory and a shared
PostgreSQL + Milvus deployment, with counts and a checksum verified at the end; its service
state (keys, feedback, the audit chain; ``gunmatch.state.transfer``) goes with it unless
``--no-state``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import UsageError, emit_json, gallery_dir, out
from gunmatch.database import create_shared_state, shared_specs
from gunmatch.settings import get_settings
from gunmatch.state import AuditSecretError, ServiceState, StateLocation, load_keyring
from gunmatch.state.backend import location_for_store, state_location
from gunmatch.state.transfer import StateNotEmptyError, StateReport, check_empty, copy_state
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
    _state_args(p, "SRC's state directory (default SRC)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = gs.add_parser(
        "export",
        help="copy a gallery (e.g. a PostgreSQL + Milvus one) into an embedded directory",
    )
    p.add_argument("--gallery", type=Path, help="the gallery to copy (default GUNMATCH_GALLERY)")
    p.add_argument("--out", type=Path, required=True, help="new embedded gallery directory")
    _state_args(p, "the gallery's state directory, holding kept images (default the gallery's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


def _state_args(p: argparse.ArgumentParser, state_help: str) -> None:
    p.add_argument("--state", type=Path, help=state_help)
    p.add_argument(
        "--no-state",
        action="store_true",
        help="copy the gallery only, not its keys, feedback and audit chain",
    )


def _report(
    report: TransferReport, dest: Path, state: StateReport | None, audit: dict | None, as_json: bool
) -> int:
    ok = report.ok and (state is None or state.ok) and (audit is None or audit["ok"])
    if as_json:
        extra = {} if state is None else {"state": {**state.to_dict(), "audit_verify": audit}}
        emit_json({"gallery": str(dest), **report.to_dict(), **extra, "ok": ok})
        return 0 if ok else 1
    s, c = report.source, report.copy
    out(f"source: {s.items} items, {s.vectors} vectors, sha256 {s.sha256}")
    out(f"copy:   {c.items} items, {c.vectors} vectors, sha256 {c.sha256}")
    out(f"vector index of the copy holds {report.indexed} vectors")
    out("verified: counts and checksum match" if report.ok else "MISMATCH: do not use the copy")
    if state is not None:
        _report_state(state, audit)
    elif report.ok:
        out("state not copied (--no-state): no keys, feedback or audit chain in the copy")
    return 0 if ok else 1


def _report_state(state: StateReport, audit: dict | None) -> None:
    for table, src in state.source.items():
        copy = state.copy[table]
        same = "ok" if src == copy else f"MISMATCH: copy has {copy.rows}, sha256 {copy.sha256}"
        out(f"state {table:<9} {src.rows:>7} rows, sha256 {src.sha256[:16]}…  {same}")
    if state.sessions_dropped:
        out(f"state: {state.sessions_dropped} web sessions not copied (their users sign in again)")
    out("verified: state counts and checksums match" if state.ok
        else "STATE MISMATCH: do not use the copy's state")  # fmt: skip
    if not state.source["audit_log"].rows:
        out("no audit records to carry")
    elif audit is None:
        out("audit chain copied verbatim; no audit secret here to verify it "
            "(gunmatch audit verify with the same GUNMATCH_AUDIT_SECRET_FILE)")  # fmt: skip
    elif audit["ok"]:
        out(f"audit chain of the copy verifies: {audit['copy']['rows']} records")
    else:
        out(f"audit chain of the copy BROKEN at record {audit['copy']['bad_id']}: "
            f"{audit['copy']['problem']}")  # fmt: skip
    if audit is not None and not audit["source"]["ok"]:
        out(
            f"the source's audit chain does not verify either (record "
            f"{audit['source']['bad_id']}: {audit['source']['problem']}); copied as it was"
        )


def _verify_audit(src: StateLocation, dest: StateLocation) -> dict | None:
    """Both chains checked with the audit secret, when there is one here (never created).
    ``ok``: the copy verifies as well as the source does (a broken source stays broken)."""
    try:
        keyring = load_keyring(get_settings().audit_secret_file, create=False)
    except AuditSecretError:
        return None
    result: dict = {}
    for side, location in (("source", src), ("copy", dest)):
        state = ServiceState(location, keyring)
        try:
            result[side] = state.audit.verify().to_dict()
        finally:
            state.close()
    result["ok"] = result["copy"]["ok"] or not result["source"]["ok"]
    return result


def _check_dest_state(location: StateLocation) -> None:
    try:
        check_empty(location)
    except StateNotEmptyError as exc:
        raise UsageError(f"{exc}; nothing copied (--no-state copies the gallery alone)") from None


def _carry_state(
    report: TransferReport, src: StateLocation, dest: Path
) -> tuple[StateReport | None, dict | None]:
    if not report.ok:
        return None, None
    dest_state = state_location(dest)
    try:
        state = copy_state(src, dest_state)
    except StateNotEmptyError as exc:  # rows appeared since the check before the copy
        raise UsageError(str(exc)) from None
    if not state.source["audit_log"].rows:
        return state, None
    return state, _verify_audit(src, dest_state)


def cmd_import(args: argparse.Namespace) -> int:
    """Embedded directory -> PostgreSQL + Milvus, with its state unless --no-state."""
    settings = get_settings()
    url = args.database_url or settings.database_url
    uri = args.vector_uri or settings.vector_uri
    if not url and not uri:
        raise UsageError(
            "import needs --database-url and/or --vector-uri "
            "(or GUNMATCH_DATABASE_URL / GUNMATCH_VECTOR_URI)"
        )
    specs = shared_specs(url, uri, args.name)
    src_state = state_location(args.src, args.state or args.src)
    if not args.no_state:
        _check_dest_state(location_for_store(specs.get("item_store"), args.gallery))
    report = copy_gallery(args.src, args.gallery, **specs)
    if report.ok:
        create_shared_state(args.gallery)
    state, audit = (None, None) if args.no_state else _carry_state(report, src_state, args.gallery)
    return _report(report, args.gallery, state, audit, args.json)


def cmd_export(args: argparse.Namespace) -> int:
    """Any gallery -> an embedded directory (FAISS + SQLite), with its state unless --no-state."""
    src = gallery_dir(args)
    src_state = state_location(src, args.state or src)
    if not args.no_state:
        _check_dest_state(location_for_store(None, args.out))
    report = copy_gallery(src, args.out)
    state, audit = (None, None) if args.no_state else _carry_state(report, src_state, args.out)
    return _report(report, args.out, state, audit, args.json)
