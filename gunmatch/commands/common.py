"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from gunmatch.settings import get_settings
from matcher.threatmap import MAP_VIEWS, ZOOM_RANGE
from screening.regions import ProposalConfig
from screening.screen import ScreeningConfig


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def add_gallery_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--gallery DIR (falls back to GUNMATCH_GALLERY)."""
    p.add_argument("--gallery", type=Path, required=False, help="gallery directory")
    p.set_defaults(_gallery_required=required)


def gallery_dir(args: argparse.Namespace) -> Path:
    """The gallery directory from --gallery or GUNMATCH_GALLERY."""
    g = args.gallery or get_settings().gallery
    if g is None:
        raise UsageError("--gallery DIR is required (or set GUNMATCH_GALLERY)")
    return Path(g)


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """--threads and --batch-size."""
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass")


def runtime(args: argparse.Namespace) -> dict:
    """threads/batch_size from flags, else settings."""
    s = get_settings(threads=args.threads, batch_size=args.batch_size)
    return {"threads": s.threads, "batch_size": s.batch_size}


def serving_runtime(args: argparse.Namespace) -> dict:
    """``runtime`` plus the service's inference path (GUNMATCH_RUNTIME, ONNX Runtime by
    default), so a search from the command line runs exactly as the service's."""
    return {**runtime(args), "runtime": get_settings().runtime}


def emit_json(obj: object) -> None:
    """One JSON object per line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def out(line: str = "") -> None:
    """A line of human-readable output on stdout."""
    sys.stdout.write(line + "\n")


def add_screening_args(p: argparse.ArgumentParser) -> None:
    """X-ray screening settings shared by `search` and `gallery calibrate-screening`."""
    p.add_argument(
        "--score-mode",
        choices=("match", "margin"),
        default="match",
        help="region threat score: best threat similarity (match, the calibration's scale) or "
        "that minus the best benign similarity (margin; needs benign/clutter references)",
    )
    p.add_argument(
        "--score-k", type=int, default=1, help="average the k best references on each side"
    )
    p.add_argument(
        "--proposals",
        type=int,
        default=None,
        help="dense-material regions proposed per scan (default "
        f"{ProposalConfig.max_regions}; {ScreeningConfig.map_proposals} with a threat map, "
        "which proposes its own hot areas too)",
    )
    p.add_argument(
        "--map-weight",
        type=float,
        default=None,
        help="weight of the gallery's threat map (gunmatch gallery threatmap) in region "
        "scores; 0 uses its regions but not its scores",
    )
    p.add_argument(
        "--no-map", action="store_true", help="ignore the gallery's threat map for this search"
    )
    p.add_argument(
        "--map-views",
        type=int,
        nargs="+",
        choices=MAP_VIEWS,
        default=None,
        metavar="N",
        help="views of the scan the threat map averages at each size, one count for all or "
        "one per --map-zooms size (1: the scan; 2: and its mirror image; 4: and both upside "
        f"down; default {' '.join(map(str, ScreeningConfig.map_views))})",
    )
    p.add_argument(
        "--map-zooms",
        type=float,
        nargs="+",
        default=None,
        metavar="ZOOM",
        help="sizes the threat map runs at, as multiples of its own (default 1 1.333: "
        "960 and 1280 px for the shipped maps; 1 alone is faster)",
    )


def screening_config(args: argparse.Namespace):
    """The ScreeningConfig of `add_screening_args` flags (checked: UsageError when bad)."""
    if args.score_k < 1:
        raise UsageError("--score-k must be at least 1")
    if args.proposals is not None and args.proposals < 1:
        raise UsageError("--proposals must be at least 1")
    if args.map_weight is not None and not 0 <= args.map_weight <= 100:
        raise UsageError("--map-weight must be between 0 and 100")
    lo, hi = ZOOM_RANGE
    if args.map_zooms is not None and not all(lo <= z <= hi for z in args.map_zooms):
        raise UsageError(f"--map-zooms must each be between {lo:g} and {hi:g}")
    cfg = ScreeningConfig(
        score_mode=args.score_mode,
        score_k=args.score_k,
        use_map=not args.no_map,
    )
    if args.map_weight is not None:
        cfg = replace(cfg, map_weight=args.map_weight)
    if args.map_zooms is not None:
        cfg = replace(cfg, map_zooms=tuple(args.map_zooms))
    if args.map_views is not None:
        cfg = replace(cfg, map_views=tuple(args.map_views))
    if args.proposals:
        cfg = cfg.with_proposals(args.proposals)
    return cfg
