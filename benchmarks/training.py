"""Fine-tune on each real dataset's gallery/, evaluate gallery/ -> queries/, report.

    nice .venv/bin/python -m benchmarks.training --write            # both datasets
    .venv/bin/python -m benchmarks.training --datasets handgun-brands --baseline handgun-brands

Training time is wall-clock on this machine (caching frozen features + fitting); evaluation
embeds gallery/ and queries/ with matcher's Embedder, as `gunmatch eval` does.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.report import git_rev, machine, write_section

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"weapon-types": 0.85, "handgun-brands": 0.62}


def run_dataset(name: str, args: argparse.Namespace, out_root: Path) -> dict:
    """Train on DATA/name/gallery, evaluate against DATA/name/queries."""
    from matcher import Embedder, load_model
    from training.evaluate import evaluate
    from training.fit import FitConfig
    from training.train import TrainConfig, train

    root = DATA / name
    row: dict = {"dataset": name}
    if name in args.baseline.split(","):
        ev = evaluate(
            root / "gallery",
            root / "queries",
            Embedder(load_model(None), threads=args.threads),
            progress=False,
        )
        row["baseline_top1"] = ev.metrics["top1"]
    cfg = TrainConfig(
        out=str(out_root / name),
        data=str(root / "gallery"),
        aug_passes=args.aug_passes,
        freeze_blocks=args.freeze_blocks,
        threads=args.threads,
        progress=False,
        fit=replace(FitConfig(), epochs=args.epochs, loss=args.loss, lr=args.lr),
    )
    report = train(cfg)
    row.update(
        samples=report.samples,
        train_samples=report.train_samples,
        val_samples=report.val_samples,
        train_seconds=report.seconds,
        best_epoch=report.fit["best_epoch"],
        val_top1=report.fit["best_val_top1"],
        model_id=report.model_id,
    )
    t = time.perf_counter()
    ev = evaluate(
        root / "gallery",
        root / "queries",
        Embedder(load_model(report.model_dir), threads=args.threads),
        progress=False,
    )
    m = ev.metrics
    row.update(
        top1=m["top1"],
        recall5=m["recall@5"],
        map10=m["map@10"],
        queries=m["queries"],
        gallery=m["gallery_items"],
        eval_seconds=round(time.perf_counter() - t, 1),
    )
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict], command: str, started: str) -> str:
    """The benchmark section."""
    lines = [
        "## Training (fine-tuning on gallery/, evaluated gallery/ -> queries/)",
        "",
        f"Command: `{command}` (commit {git_rev()})  ",
        f"Machine: {started}",
        "",
        "| dataset | train images (held-out val) | ImageNet top-1 | trained top-1 | target | "
        "recall@5 | mAP@10 | training time (cache + fit) | best epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["train_seconds"]
        base = f"{r['baseline_top1']:.3f}" if "baseline_top1" in r else "not run"
        lines.append(
            f"| {r['dataset']} | {r['samples']} ({r['val_samples']}) | {base} | "
            f"**{r['top1']:.3f}** | {TARGETS.get(r['dataset'], float('nan')):.2f} | "
            f"{r['recall5']:.3f} | {r['map10']:.3f} | {s['total']:.0f} s "
            f"({s['cache']:.0f} + {s['fit']:.0f}) | {r['best_epoch']} |"
        )
    lines += [
        "",
        "Training: efficientnet_lite0, first blocks frozen and their outputs cached for one "
        "clean and N augmented views per image; the remaining blocks and head conv fine-tuned "
        "with the loss shown in the command (defaults of `training.fit.FitConfig` otherwise); "
        "early stopping on a grouped validation split of gallery/. The CPU was shared with other "
        "jobs while measuring (see load average), so times are upper bounds.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run and optionally write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="weapon-types,handgun-brands")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--aug-passes", type=int, default=2)
    p.add_argument("--freeze-blocks", type=int, default=11)
    p.add_argument("--loss", default="cosface")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", default="", help="datasets on which to also measure ImageNet")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = p.parse_args(argv)
    started = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            if not (DATA / name / "gallery").is_dir():
                print(f"skipping {name}: {DATA / name} not found", file=sys.stderr)
                continue
            rows.append(run_dataset(name, args, Path(tmp)))
    command = "nice .venv/bin/python -m benchmarks.training " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    if rows and args.write:
        write_section("training", markdown(rows, command, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
