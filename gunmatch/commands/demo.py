"""`gunmatch demo`: build the embedded demo gallery from generated images and run one search."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import out
from gunmatch.demo import build_demo


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    p = sub.add_parser("demo", help="build the demo gallery from generated images and search it")
    p.add_argument("--dir", type=Path, default=Path("demo-data"), help="where to put demo data")
    p.add_argument("--per-kind", type=int, default=6, help="references per part kind")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate, index and search."""
    info = build_demo(args.dir, per_kind=args.per_kind)
    out(f"demo gallery: {info['gallery']} ({info['items']} items, model {info['model_id']})")
    out(f"decision thresholds calibrated on unseen generated scans: {info['calibration']}")
    out(
        f"query {info['query']} (a parcel holding a {info['query_kind']} the gallery has not "
        f"seen, at {info['query_box']}): {info['decision'].upper()}"
    )
    for m in info["matches"]:
        flag = " THREAT" if m["threat"] else ""
        out(f"  {m['rank']:>2}. {m['score']:.3f}  {m['label']:<14} {m['category']}{flag}")
    for r in info["regions"][:3]:
        out(f"  region {r['box']}: {r['decision']}")
    return 0
