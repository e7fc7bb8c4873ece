"""Rescore a screening benchmark's dumped regions at other threat-map weights (offline).

``python -m benchmarks.xray_screening --split val --map-weight 0 --dump regions.json ...``
keeps each scan's regions with their retrieval score and the map's probability. This
script recomputes every scan's score as max over regions of (retrieval + w x map) for each
weight, and the map's probability alone, without screening again:

    python -m benchmarks.xray_fusion regions.json --weights 0.5 1 2 5 10 20

Use it on validation parcels only: choosing a weight on the reported ones would tune to them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.xray_screening import rate_at
from screening.regions import iou

Score = Callable[[float, float], float]


def scan_scores(rows: list[dict], score: Score) -> tuple[np.ndarray, np.ndarray]:
    """Each scan's best region score, and the IoU of that region with the part (0 if none)."""
    best, hit = [], []
    for row in rows:
        regions = [g for g in row["regions"] if g["retrieval"] is not None]
        if not regions:
            best.append(-np.inf)
            hit.append(0.0)
            continue
        s = [score(g["retrieval"], g["map"] or 0.0) for g in regions]
        top = regions[int(np.argmax(s))]
        best.append(max(s))
        truth = np.array(row["truth"], float).reshape(-1, 4)
        hit.append(float(iou(np.array([top["box"]], float), truth).max()) if len(truth) else 0.0)
    return np.array(best), np.array(hit)


def partial_detection(pos: np.ndarray, neg: np.ndarray, fa: float) -> float:
    """Mean detection rate over thresholds letting 0, 1, ... up to ``fa`` of clean scans alarm."""
    ranked = np.sort(neg)[::-1]
    k = min(int(round(fa * len(ranked))), len(ranked) - 1)
    return float(np.mean([np.mean(pos > ranked[j]) for j in range(k + 1)]))


def figures(rows: list[dict], score: Score) -> dict[str, float]:
    """Detection above the highest clean score, at 1% and 5% false alarms, partial rates."""
    positive = np.array([r["positive"] for r in rows])
    s, hit = scan_scores(rows, score)
    pos, neg = s[positive], s[~positive]
    det1, thr1 = rate_at(pos, neg, 0.01)
    detected = pos > thr1
    return {
        "max_clean": float(np.mean(pos > neg.max())),
        "det_1": det1,
        "det_5": rate_at(pos, neg, 0.05)[0],
        "partial_2": partial_detection(pos, neg, 0.02),
        "auc": float(np.mean(pos[:, None] > neg[None, :])),
        "hit_1": float(np.mean(hit[positive][detected] >= 0.3)) if detected.any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dump", type=Path, help="regions written by xray_screening --dump")
    p.add_argument("--weights", type=float, nargs="+", default=[0, 0.5, 1, 2, 5, 10, 20])
    args = p.parse_args(argv)
    rows = json.loads(args.dump.read_text())
    n_pos = sum(r["positive"] for r in rows)
    print(f"{args.dump}: {n_pos} parcels with a part, {len(rows) - n_pos} without\n")
    print(
        "| region score | det. above highest clean | det. 1% FA | det. 5% FA "
        "| mean det. 0-2% FA | AUC | box hit (1% FA) |"
    )
    print("|---|---|---|---|---|---|---|")
    cases: list[tuple[str, Score]] = [
        (f"retrieval + {w:g} x map", lambda r, m, w=w: r + w * m) for w in args.weights
    ]
    cases.append(("map probability alone", lambda r, m: m + 1e-9 * r))
    for name, score in cases:
        f = figures(rows, score)
        print(
            f"| {name} | {f['max_clean']:.3f} | {f['det_1']:.3f} | {f['det_5']:.3f} "
            f"| {f['partial_2']:.3f} | {f['auc']:.3f} | {f['hit_1']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
