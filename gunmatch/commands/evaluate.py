"""`gunmatch eval --gallery-src DIR --queries DIR`: retrieval and screening metrics, report,
and optionally the service's calibration file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gunmatch.commands.common import UsageError, add_runtime_args, emit_json, out, runtime
from gunmatch.decision import calibration_path
from matcher import Embedder, load_checkpoint, load_model
from matcher.preprocess import MODALITIES
from training.evaluate import evaluate
from training.report import shared_pictures_text, write_calibration, write_report


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `eval` command."""
    p = sub.add_parser("eval", help="evaluate a model: references vs labelled queries")
    p.add_argument(
        "--gallery-src",
        type=Path,
        required=True,
        help="reference folder DIR/<label>/<image>, or a built gallery directory",
    )
    p.add_argument("--queries", type=Path, required=True, help="query folder DIR/<label>/<image>")
    p.add_argument("--model", help="backbone name or model directory (default: the gallery's)")
    p.add_argument("--threat-labels", default="", help="comma-separated threat labels (ROC)")
    p.add_argument("--modality", choices=MODALITIES, default="photo")
    p.add_argument("--out", type=Path, help="report directory (metrics.json, PNGs, report.md)")
    p.add_argument(
        "--write-calibration",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="write the alert/review thresholds as the service's calibration file "
        "(default PATH: GALLERY_SRC/calibration.json for a gallery)",
    )
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.add_argument("--quiet", action="store_true")
    add_runtime_args(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate and report."""
    for path in (args.gallery_src, args.queries):
        if not path.is_dir():
            raise UsageError(f"{path} is not a directory")
    is_gallery = (args.gallery_src / "manifest.json").is_file()
    if args.model:
        model = load_model(args.model)
    elif is_gallery:
        model = load_checkpoint(args.gallery_src / "model")
    else:
        model = load_model(None)
    threats = [t.strip() for t in args.threat_labels.split(",") if t.strip()]
    if args.write_calibration is not None and not threats:
        raise UsageError("--write-calibration needs --threat-labels")
    if args.write_calibration == "" and not is_gallery:
        raise UsageError("give --write-calibration PATH when --gallery-src is not a gallery")
    embedder = Embedder(model, **runtime(args))
    ev = evaluate(
        args.gallery_src, args.queries, embedder, threats, args.modality, progress=not args.quiet
    )
    if args.out:
        write_report(ev, args.out)
    cal_path = None
    if args.write_calibration is not None:
        cal_path = write_calibration(
            ev.metrics,
            calibration_path(args.gallery_src, args.write_calibration or None),
            f"gunmatch eval --queries {args.queries}",
        )
    m = ev.metrics
    if args.json:
        emit_json({k: v for k, v in m.items() if k != "confusion"})
        return 0
    out(f"model {m['model_id']}: {m['queries']} queries vs {m['gallery_items']} references")
    out(
        f"top-1 {m['top1']:.4f}  recall@5 {m['recall@5']:.4f}  recall@10 {m['recall@10']:.4f}  "
        f"mAP@10 {m['map@10']:.4f}"
    )
    shared = shared_pictures_text(m)
    if shared:
        out(shared)
    for lab, v in m["per_label"].items():
        out(
            f"  {lab:<20} top-1 {v['accuracy']:.3f}  recall@5 {v['recall@5']:.3f}  "
            f"mAP@10 {v['map@10']:.3f} ({v['queries']} queries)"
        )
    if "threat" in m:
        t = m["threat"]
        out(
            f"threat AUC {t['auc']:.4f}; TPR {t['tpr@fpr1%']:.3f} at FPR<=1% "
            f"(score >= {t['alert']['threshold']:.4f}), TPR {t['tpr@fpr5%']:.3f} at FPR<=5% "
            f"(score >= {t['review']['threshold']:.4f})"
        )
    if args.out:
        out(f"report written to {args.out}")
    if cal_path:
        out(f"calibration written to {cal_path}")
    return 0
