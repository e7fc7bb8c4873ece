"""`gunmatch adapt --gallery G CLEARED... [--minutes N]`: fit X-ray screening to a station."""

from __future__ import annotations

import argparse
from dataclasses import replace

from gunmatch.adapt import (
    REPORT_FILE,
    adapt_gallery,
    projected,
    station_change,
    threshold_scans_text,
)
from gunmatch.commands.common import (
    UsageError,
    add_gallery_arg,
    add_screening_args,
    emit_json,
    gallery_dir,
    out,
    runtime,
    screening_config,
    serving_runtime,
)
from gunmatch.maps import previous_threatmap
from gunmatch.service import expand_paths
from training.xray.adapt import AdaptConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `adapt` command."""
    p = sub.add_parser(
        "adapt",
        help="X-ray: adapt the threat map and thresholds to this station's scanner, from scans "
        "it already cleared",
        description="Fine-tunes the gallery's threat map on the cleared scans (negatives) and on "
        "the gallery's threat references projected into them (positives), keeps it only when "
        "it does not forget the generated parcels, then measures the screening thresholds on "
        "the held-out cleared scans. The service picks it up on reload (SIGHUP).",
    )
    p.add_argument("scans", nargs="+", help="cleared scans: files or folders (recursive)")
    add_gallery_arg(p)
    defaults = AdaptConfig()
    p.add_argument(
        "--minutes", type=float, default=defaults.minutes, help="time budget (default 15)"
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=defaults.holdout,
        help="share of the scans kept out of training for choosing, reporting and the "
        "thresholds (default 0.4)",
    )
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument(
        "--rehearsal",
        type=float,
        default=defaults.rehearsal,
        help="generated training parcels mixed in per station training sample, so that the "
        "map does not forget the generator (default %(default)s; 0: none)",
    )
    p.add_argument(
        "--base-share",
        type=float,
        default=defaults.base_share,
        help="the base map's share in the adapted head's weights: the head kept is that mean "
        "of the base and the fine-tuned one (default %(default)s; 0: the fine-tuned head)",
    )
    p.add_argument(
        "--gate-margin",
        type=float,
        default=defaults.gate_margin,
        help="largest drop of the generated-parcel AUC accepted (default 0.02)",
    )
    p.add_argument("--false-alarm", type=float, default=0.01, help="alert rate on clean scans")
    p.add_argument("--review-rate", type=float, default=0.05, help="review rate on clean scans")
    p.add_argument("--seed", type=int, default=0)
    add_screening_args(p)
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_adapt)


def scans_of_given(report: dict) -> str:
    """The words " of N given" where the budget held fewer scans than the station offered."""
    unread = report.get("cleared_scans_unread", 0)
    return f" of {report['cleared_scans_given']} given" if unread else ""


def cmd_adapt(args: argparse.Namespace) -> int:
    """Adapt, and say what changed."""
    if args.minutes <= 0 or args.epochs < 1 or not 0 < args.holdout < 1 or args.rehearsal < 0:
        raise UsageError(
            "need --minutes > 0, --epochs >= 1, 0 < --holdout < 1 and --rehearsal >= 0"
        )
    if not 0 <= args.base_share < 1:
        raise UsageError("need 0 <= --base-share < 1")
    if not 0 < args.false_alarm <= args.review_rate < 1:
        raise UsageError("need 0 < --false-alarm <= --review-rate < 1")
    cfg = replace(
        AdaptConfig(),
        minutes=args.minutes,
        holdout=args.holdout,
        epochs=args.epochs,
        rehearsal=args.rehearsal,
        base_share=args.base_share,
        gate_margin=args.gate_margin,
        seed=args.seed,
    )
    paths = expand_paths(args.scans)
    if not paths:
        raise UsageError("no images found in the given paths")
    gdir = gallery_dir(args)
    report = adapt_gallery(
        gdir,
        [(str(p), p) for p in paths],
        cfg,
        screening_config(args),
        args.false_alarm,
        args.review_rate,
        threads=runtime(args)["threads"],
        progress=not args.quiet,
        runtime=serving_runtime(args)["runtime"],
    )
    if args.json:
        emit_json(report)
        return 0 if report["gate"]["accepted"] else 1
    before, after = report["before"], report["after"]
    out(
        f"held-out station scans: AUC {before['station']['auc']:.3f} -> "
        f"{after['station']['auc']:.3f} (small parts {station_change(report, 'auc_small')}, larger "
        f"objects {station_change(report, 'auc_large')}); generated parcels: AUC "
        f"{before['generated']['auc']:.3f} -> {after['generated']['auc']:.3f} "
        f"({report['training_scans']} training and {report['held_out_scans']} held-out scans"
        f"{scans_of_given(report)}, {projected(report)}, {report['references']} references, "
        f"{report['seconds']:.0f} s)"
    )
    if not report["gate"]["accepted"]:
        out(f"refused: the gallery keeps its threat map; report in {gdir / REPORT_FILE}")
        return 1
    cal = report["screening_calibration"]
    out(
        f"installed the adapted threat map in {gdir}; screening thresholds measured on "
        f"{cal['metrics']['scans']} cleared scans training never saw "
        f"({threshold_scans_text(cal)}): alert {cal['alert_threshold']:.3f} (about "
        f"{cal['metrics']['expected_false_alarm']:.1%} of new clean parcels), review "
        f"{cal['review_threshold']:.3f}. A running service picks them up on reload (SIGHUP or "
        "POST /v1/admin/reload)."
    )
    out(
        "check the station's detections: adapt's gate measured the map on projected references, "
        "not the screening of the station's own bags. To put the previous map back: gunmatch "
        f"gallery threatmap {previous_threatmap(gdir)} --gallery {gdir}"
    )
    return 0
