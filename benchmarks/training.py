"""Fine-tune on each real dataset's gallery/, evaluate gallery/ -> queries/, report.

    nice .venv/bin/python -m benchmarks.training --write            # both datasets
    .venv/bin/python -m benchmarks.training --datasets handgun-brands --baseline handgun-brands

Training time is wall-clock on this machine (caching frozen features + fitting); evaluation
embeds gallery/ and queries/ with matcher's Embedder, as `gunmatch eval` does.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import DOC, git_rev, machine, write_section
from matcher import Embedder, load_model
from training.evaluate import evaluate
from training.train import TrainConfig, photo_fit, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"weapon-types": 0.90, "handgun-brands": 0.75}  # issue #15
# Hand-written notes (configurations tried, with their results) kept across --write runs.
NOTES = Path(__file__).with_name("notes") / "training.md"


def run_dataset(name: str, args: argparse.Namespace, out_root: Path) -> dict:
    """Train on DATA/name/gallery, evaluate against DATA/name/queries."""
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
        val_fraction=args.val_fraction,
        freeze_blocks=args.freeze_blocks,
        input_size=args.input_size,
        threads=args.threads,
        progress=False,
        fit=photo_fit(epochs=args.epochs, loss=args.loss, lr=args.lr),
        min_steps=args.min_steps,
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


def markdown(rows: list[dict]) -> str:
    """The benchmark section; each row carries the command and machine that measured it."""
    lines = [
        "## Training (fine-tuning on gallery/, evaluated gallery/ -> queries/)",
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
    lines.append("")
    for r in rows:
        lines.append(
            f"- {r['dataset']}: `{r.get('command', '?')}` (commit {r.get('commit', '?')}); "
            f"{r.get('machine', '?')}"
        )
    lines += [
        "",
        "Training: efficientnet_lite0, first blocks frozen and their outputs cached for one "
        "clean and N augmented views per image; the remaining blocks and head conv fine-tuned "
        "with CosFace (defaults of `training.fit.FitConfig` unless the command says otherwise). "
        "With a held-out validation split the best epoch is kept (early stopping); with "
        "`--val-fraction 0` all of gallery/ is trained on for the fixed number of epochs. "
        "Times are wall-clock; each row's machine line gives the load average at its start "
        "(above 2 means the 2 cores were shared, and the time is an upper bound).",
    ]
    if NOTES.is_file():
        lines += ["", NOTES.read_text().strip()]
    lines += ["", "<!-- rows " + json.dumps(rows) + " -->"]
    return "\n".join(lines)


def previous_rows(doc_text: str) -> list[dict]:
    """Rows embedded in an earlier training section (kept for datasets not re-run)."""
    m = re.search(r"<!-- BEGIN training -->.*?<!-- rows (.*?) -->", doc_text, re.S)
    return json.loads(m.group(1)) if m else []


def _section_machine() -> str:
    """The machine line of the current training section (old format), if any."""
    text = DOC.read_text() if DOC.exists() else ""
    m = re.search(r"<!-- BEGIN training -->.*?Machine: ([^\n]*)", text, re.S)
    return m.group(1).strip() if m else "not recorded"


def main(argv: list[str] | None = None) -> int:
    """Run and optionally write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="weapon-types,handgun-brands")
    # Defaults: those of `gunmatch train` (TrainConfig), so a plain run measures what users get.
    base = TrainConfig(out="")
    p.add_argument("--epochs", type=int, default=base.fit.epochs, help="at least this many")
    p.add_argument(
        "--min-steps", type=int, default=base.min_steps, help="optimiser steps (0: --epochs)"
    )
    p.add_argument("--aug-passes", type=int, default=base.aug_passes)
    p.add_argument("--freeze-blocks", type=int, default=base.freeze_blocks)
    p.add_argument("--loss", default=base.fit.loss)
    p.add_argument(
        "--input-size", type=int, default=base.input_size, help="input size (as gunmatch train)"
    )
    p.add_argument("--lr", type=float, default=base.fit.lr)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", default="", help="datasets on which to also measure ImageNet")
    p.add_argument("--val-fraction", type=float, default=base.val_fraction)
    p.add_argument(
        "--import-rows",
        action="append",
        default=[],
        metavar="FILE=COMMAND",
        help="JSON lines printed by an earlier run of COMMAND (repeatable)",
    )
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = p.parse_args(argv)
    started, commit = machine(), git_rev()  # the load, time and code at its start
    command = ".venv/bin/python -m benchmarks.training " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in filter(None, args.datasets.split(",")):
            if not (DATA / name / "gallery").is_dir():
                print(f"skipping {name}: {DATA / name} not found", file=sys.stderr)
                continue
            row = run_dataset(name, args, Path(tmp))
            rows.append({**row, "command": command, "machine": started, "commit": commit})
    if args.write and (rows or args.import_rows):
        done = {r["dataset"] for r in rows}
        kept = previous_rows(DOC.read_text()) if DOC.exists() else []
        for spec in args.import_rows:
            path, _, cmd = spec.partition("=")
            kept += [
                {**json.loads(line), "command": cmd, "machine": _section_machine()}
                for line in Path(path).read_text().splitlines()
                if line.startswith("{")
            ]
        kept = [r for r in kept if r["dataset"] not in done]
        write_section("training", markdown(kept + rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
