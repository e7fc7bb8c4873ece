"""`gunmatch search --gallery DIR PATH... [--k 10] [--json]`."""

from __future__ import annotations

import argparse

from gunmatch.commands.common import (
    UsageError,
    add_gallery_arg,
    add_runtime_args,
    add_screening_args,
    emit_json,
    gallery_dir,
    out,
    screening_config,
    serving_runtime,
)
from gunmatch.search import SearchOptions, SearchOutcome, load_judge, search_image
from gunmatch.service import expand_paths, open_engine
from index import CATEGORY_KEYS, Filters
from matcher.preprocess import MODALITIES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` command."""
    p = sub.add_parser("search", help="find the nearest references for images or folders")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    add_gallery_arg(p)
    p.add_argument("--k", type=int, default=10, help="matches per query (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per query")
    p.add_argument("--modality", choices=MODALITIES, help="default: the gallery's modality")
    p.add_argument("--category", choices=CATEGORY_KEYS, help="only references of this category")
    p.add_argument("--threat-only", action="store_true", help="only threat references")
    p.add_argument("--model", help="must match the gallery's model (default: the gallery's own)")
    p.add_argument(
        "--regions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="X-ray screening: find parts inside cluttered scans, with boxes and decisions "
        "(default: on when the query modality is xray; --no-regions searches whole images)",
    )
    add_screening_args(p)
    add_runtime_args(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Search each path; unreadable files are reported and the batch goes on."""
    if args.k < 1:
        raise UsageError("--k must be at least 1")
    opts = SearchOptions(
        k=args.k,
        modality=args.modality,
        filters=Filters(category=args.category, threat=True if args.threat_only else None),
        regions=args.regions,
        screening=screening_config(args),
    )
    paths = expand_paths(args.paths)
    if not paths:
        raise UsageError("no images found in the given paths")
    engine = open_engine(gallery_dir(args), args.model, **serving_runtime(args))
    failures = 0
    try:
        judge = load_judge(engine, opts.screening)
        for path in paths:
            try:
                res = search_image(engine, str(path), path, opts, judge)
            except (ValueError, OSError) as exc:  # ImageError is a ValueError
                failures += 1
                if args.json:
                    emit_json({"query": str(path), "error": str(exc)})
                else:
                    out(f"{path}: error: {exc}")
                continue
            if args.json:
                emit_json(res.to_dict())
            else:
                print_outcome(res)
    finally:
        engine.close()
    # Exit 1 only when nothing could be searched; per-file errors are in the output.
    return 1 if failures == len(paths) else 0


def print_outcome(res: SearchOutcome) -> None:
    """One query's verdict, matches and (when screened) regions, for people."""
    extra = f", {res.screened.proposals} proposals" if res.screened else ""
    out(f"{res.query}  {res.decision.decision.upper()}  ({res.elapsed_ms:.0f} ms{extra})")
    for m in res.matches:
        flag = " THREAT" if m.item.threat else ""
        out(
            f"  {m.rank:>2}. {m.score:.3f}  {m.item.label:<16} {m.item.category:<14} "
            f"{m.item.item_id}{flag}"
        )
    for r in res.screened.regions if res.screened else []:
        x, y, w, h = r.box
        best = r.threat_match
        what = f"{best.item.label} {best.score:.3f}" if best else "no threat match"
        out(f"  [{x}, {y}, {w}, {h}]  {r.decision:<6} {what}")
