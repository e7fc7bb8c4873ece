"""`gunmatch model list|show|add|promote|rollback|reload`: the model registry, gated promotion,
and telling every replica of a shared gallery to reload."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import (
    UsageError,
    add_gallery_arg,
    add_runtime_args,
    emit_json,
    gallery_dir,
    out,
)
from gunmatch.commands.common import runtime as runtime_args
from gunmatch.reindex import reload_replicas
from gunmatch.settings import get_settings
from gunmatch.shipped import MODELS_DIR, list_shipped
from gunmatch.state import open_state
from index import Gallery
from matcher.threatmap import is_threatmap
from training.promote import notify, promote, rollback
from training.registry import Registry
from training.ship import ship_model, ship_threatmap


def _registry_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        type=Path,
        help="registry directory (default $GUNMATCH_MODELS_DIR, else GALLERY.models)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` command group."""
    g = sub.add_parser("model", help="model registry: list, show, promote, roll back")
    gs = g.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = gs.add_parser(
        "list",
        help="shipped models, and registered ones (* marks the gallery's current model)",
    )
    _registry_arg(p)
    add_gallery_arg(p, required=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = gs.add_parser("show", help="a model's card and its promotion history")
    p.add_argument("model_id")
    _registry_arg(p)
    add_gallery_arg(p, required=False)
    p.set_defaults(func=cmd_show)

    p = gs.add_parser("add", help="register a checkpoint directory")
    p.add_argument("model_dir", type=Path)
    _registry_arg(p)
    add_gallery_arg(p, required=False)
    p.set_defaults(func=cmd_add)

    p = gs.add_parser(
        "promote",
        help="gate a model on the evaluation set and switch the gallery",
        description="Re-embed the gallery into a shadow with MODEL, compare both on the fixed "
        "evaluation queries, and switch only if no tracked metric drops beyond the tolerance. "
        "An embedded gallery's shadow is a directory swapped in (its state files move with "
        "it; reload the service with --notify/--pid). A shared gallery's shadow is a new "
        "Milvus collection plus the candidate's vectors in its PostgreSQL schema, built while "
        "the replicas serve; what they add or delete meanwhile is caught up under the write "
        "lock, then the database, collection, model/, calibration and manifest switch and the "
        "reload generation is bumped (keys, sessions, feedback and the audit chain stay put).",
    )
    p.add_argument("model", help="registry id (or prefix) or checkpoint directory")
    add_gallery_arg(p)
    _registry_arg(p)
    p.add_argument(
        "--eval-queries",
        type=Path,
        help="fixed evaluation queries DIR/<label>/<image> (recorded on first use)",
    )
    p.add_argument("--threat-labels", default=None, help="comma-separated threat labels")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest allowed drop of any tracked metric (default 0.01)",
    )
    p.add_argument("--report", type=Path, help="write current/candidate metrics here")
    p.add_argument(
        "--notify",
        help="POST here after switching, e.g. http://host:8000/v1/admin/reload (embedded "
        "galleries; a shared gallery's replicas are told through its reload generation)",
    )
    p.add_argument("--pid", type=int, help="send SIGHUP to this service process after switching")
    p.add_argument("--quiet", action="store_true")
    add_runtime_args(p)
    p.set_defaults(func=cmd_promote)

    p = gs.add_parser(
        "ship",
        help="store a trained X-ray model or threat map as a shipped artifact under models/",
        description="Float16, only what differs from the bundled trunk, with card.json (training "
        "command, seeds, generator version, data hash, metrics) and golden.json.",
    )
    p.add_argument(
        "src",
        type=Path,
        nargs="+",
        help="a threat map (train-threatmap) or model (train-xray); several threat maps make "
        "one ensemble whose logits are their mean (weighted with --shares)",
    )
    p.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=None,
        help="an ensemble's weight of each map's logits, in SRC order (default: equal)",
    )
    p.add_argument("--name", required=True, help="artifact name, e.g. threatmap-v1")
    p.add_argument("--out", type=Path, default=None, help="parent directory (default: models/)")
    p.add_argument("--command", default="", help="the command that trained SRC, for the card")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ship)

    p = gs.add_parser(
        "rollback",
        help="switch the gallery back to the previously promoted model",
        description="Re-embed with the model promoted before the current one and restore the "
        "calibration it had. On a shared gallery the previous model's vectors were kept at "
        "the switch, so only items added since are embedded; its old collection is dropped "
        "and a new one built from those vectors, then the replicas reload.",
    )
    add_gallery_arg(p)
    _registry_arg(p)
    p.add_argument("--notify")
    p.add_argument("--pid", type=int)
    p.add_argument("--quiet", action="store_true")
    add_runtime_args(p)
    p.set_defaults(func=cmd_rollback)

    p = gs.add_parser(
        "reload",
        help="make every replica serving a shared gallery reload its model and calibration",
    )
    add_gallery_arg(p)
    p.set_defaults(func=cmd_reload)


def _registry(args: argparse.Namespace):

    settings = get_settings()
    root = args.registry or settings.models_dir
    if root is None:
        if args.gallery is None and settings.gallery is None:
            raise UsageError("give --registry DIR (or --gallery, or set GUNMATCH_MODELS_DIR)")
        g = gallery_dir(args).resolve()
        root = g.with_name(f"{g.name}.models")
    return Registry(root)


def _current_model(args: argparse.Namespace) -> str | None:

    try:
        g = gallery_dir(args)
    except Exception:  # noqa: BLE001 - no gallery given: nothing is current
        return None
    if not (Path(g) / "manifest.json").is_file():
        return None
    with Gallery.open(g) as gal:
        return gal.model_id


def cmd_list(args: argparse.Namespace) -> int:
    """List the shipped models, then the registry's (when there is one)."""
    for entry in list_shipped():
        card = entry["card"]
        if args.json:
            emit_json({"shipped": True, **entry})
            continue
        ident = card.get("map_id") or card.get("model_id") or "-"
        out(f"  {entry['name']:<16} shipped  {entry['kind'] or '-':<22} {ident}  {entry['path']}")
    settings = get_settings()
    unset = (args.registry, args.gallery, settings.gallery, settings.models_dir)
    if all(v is None for v in unset):
        return 0  # no registry to list
    reg = _registry(args)
    current = _current_model(args)
    for e in reg.list():
        s = e.summary()
        if args.json:
            emit_json({**s, "current": e.model_id == current})
            continue
        mark = "*" if e.model_id == current else " "
        val = f"{s['val_top1']:.3f}" if isinstance(s["val_top1"], float) else "-"
        out(
            f"{mark} {e.model_id}  {s['created_at']}  base={s['base'] or '-'}  "
            f"samples={s['samples'] or '-'}  val_top1={val}"
        )
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    """Store a trained threat map or X-ray model as a shipped artifact."""
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UsageError("--name must be a plain directory name, e.g. threatmap-v1")
    dest = (args.out or MODELS_DIR) / args.name
    srcs = args.src
    if args.shares is not None and (len(srcs) < 2 or len(args.shares) != len(srcs)):
        raise UsageError("--shares needs several threat maps and one share for each")
    if args.shares is not None and (min(args.shares) < 0 or sum(args.shares) <= 0):
        raise UsageError("--shares must be non-negative and not all zero")
    if all(is_threatmap(p) for p in srcs):
        card = ship_threatmap(srcs, dest, args.command, not args.quiet, args.shares)
        what = f"threat map {card['map_id']}, held-out AUC {card['metrics']['val']['auc']:.3f}"
    elif len(srcs) > 1:
        raise UsageError("several sources must all be threat maps (they make one ensemble)")
    elif (srcs[0] / "meta.json").is_file():
        card = ship_model(srcs[0], dest, args.command)
        what = f"model {card['model_id']}, {card['size_bytes'] / 1e6:.1f} MB"
    else:
        raise UsageError(f"{srcs[0]} is neither a threat map nor a model directory")
    out(f"shipped {what} to {dest} (card.json, golden.json)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one model's card and history."""
    reg = _registry(args)
    e = reg.get(args.model_id)
    history = [
        h for h in reg.history() if e.model_id in (h.get("model_id"), h.get("previous_model_id"))
    ]
    emit_json({"model_id": e.model_id, "path": str(e.path), "meta": e.meta, "history": history})
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Register a checkpoint."""
    e = _registry(args).add(args.model_dir)
    out(f"registered {e.model_id} at {e.path}")
    return 0


def _reload(args: argparse.Namespace) -> None:

    announced = announce_switch(gallery_dir(args))
    if args.notify or args.pid:
        out(notify(args.notify, args.pid, get_settings().api_key))
    elif not announced:
        out(
            "the running service still serves the old model: reload it with "
            "'kill -HUP <pid>' or 'curl -X POST -H \"X-API-Key: $ADMIN_KEY\" "
            "http://HOST:PORT/v1/admin/reload'"
        )


def announce_switch(gdir: Path) -> bool:
    """After a shared gallery's switch, bump its reload generation (every replica reloads
    the new model and collection); False for an embedded gallery."""
    try:
        gen = reload_replicas(gdir)
    except Exception as exc:  # noqa: BLE001 - switched already; say how to finish
        out(
            f"switched, but the replicas were not told ({exc}): run "
            f"'gunmatch model reload --gallery {gdir}'"
        )
        return True
    if gen is None:
        return False
    poll = get_settings().reload_poll_s
    out(f"reload generation {gen}: every replica serving {gdir} reloads within {poll:g} s")
    return True


def cmd_promote(args: argparse.Namespace) -> int:
    """Gate and switch."""
    threats = None
    if args.threat_labels is not None:
        threats = [t.strip() for t in args.threat_labels.split(",") if t.strip()]
    rt = runtime_args(args)
    gate = promote(
        _registry(args),
        args.model,
        gallery_dir(args),
        args.eval_queries,
        threats,
        args.tolerance,
        rt["threads"],
        rt["batch_size"],
        args.report,
        progress=not args.quiet,
    )
    for name, value in gate.candidate.items():
        out(f"  {name:<18} current {gate.current[name]:.4f}  candidate {value:.4f}")
    if not gate.accepted:
        out("promotion refused: " + "; ".join(gate.drops))
        return 1
    out(f"promoted {args.model} on {gallery_dir(args)}")
    _reload(args)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Roll back to the previous model."""
    rt = runtime_args(args)
    target = rollback(
        _registry(args), gallery_dir(args), rt["threads"], rt["batch_size"], progress=not args.quiet
    )
    out(f"rolled back {gallery_dir(args)} to model {target}")
    _reload(args)
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Bump a shared gallery's reload generation; every replica watching it reloads."""
    gdir = gallery_dir(args)
    state = open_state(gdir)
    try:
        if not state.location.shared:
            raise UsageError(
                f"{gdir} is an embedded gallery: reload its service with 'kill -HUP <pid>' or "
                "POST /v1/admin/reload (with an admin key)"
            )
        gen = state.request_reload()
    finally:
        state.close()
    poll = get_settings().reload_poll_s
    out(f"reload generation {gen}: every replica serving {gdir} reloads within {poll:g} s")
    return 0
