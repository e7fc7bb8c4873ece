"""Rescore a screening benchmark's dumped regions with other fusion weights (offline).

``python -m benchmarks.xray_screening --split val --dump regions.json ...`` (or
``benchmarks.xray_domain --split val --dump``, one list per row) keeps every region of
every scan, unmerged, with its retrieval score, the threat map's logit, the box's fit to the
map's hot area and whether it is one of the map's own boxes. This script recomputes each
scan's score as the max over regions of (retrieval + w x logit + f x fit + b x own box) for
each weight, the old form (retrieval + 20 x probability + fit) and the map's logit alone,
without screening again:

    python -m benchmarks.xray_fusion regions.json --weights 0.5 1 2 --fit-weights 0 0.5 1 \
        --box-weights 0 1

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

# (retrieval, logit, fit, own box) of a scan's regions -> their scores
Score = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def scan_scores(rows: list[dict], score: Score) -> tuple[np.ndarray, np.ndarray]:
    """Each scan's best region score, and the IoU of that region with the part (0 if none).

    Ties go to the earlier region: the order screening lists them in (the map's boxes first).
    """
    best, hit = [], []
    for row in rows:
        regions = [g for g in row["regions"] if g["retrieval"] is not None]
        if not regions:
            best.append(-np.inf)
            hit.append(0.0)
            continue
        s = score(
            np.array([g["retrieval"] for g in regions]),
            np.array([g["logit"] or 0.0 for g in regions]),
            np.array([g["fit"] or 0.0 for g in regions]),
            np.array([float(g.get("own", False)) for g in regions]),
        )
        top = regions[int(np.argmax(s))]
        best.append(float(np.max(s)))
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
        "hit_all": float(np.mean(hit[positive] >= 0.3)),
    }


def cases(
    weights: list[float], fit_weights: list[float], box_weights: list[float]
) -> list[tuple[str, Score]]:
    """The region scores compared: today's form over the weight grid, the old form and the
    map alone."""
    out: list[tuple[str, Score]] = [
        (
            f"retrieval + {w:g} x logit + {f:g} x fit + {b:g} x own box",
            lambda r, lg, ft, own, w=w, f=f, b=b: r + w * lg + f * ft + b * own,
        )
        for w in weights
        for f in fit_weights
        for b in box_weights
    ]
    out.append(
        (
            "retrieval + 20 x probability + fit (before)",
            lambda r, lg, ft, own: r + 20 * _sigmoid(lg) + ft,
        )
    )
    out.append(("map logit alone", lambda r, lg, ft, own: lg + 1e-9 * r))
    return out


def load_sets(path: Path) -> dict[str, list[dict]]:
    """A dump's scans: one set from xray_screening, one per row from xray_domain."""
    data = json.loads(path.read_text())
    return {path.stem: data} if isinstance(data, list) else data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", type=Path, nargs="+", help="regions written with --dump")
    p.add_argument("--weights", type=float, nargs="+", default=[0, 0.5, 1, 2])
    p.add_argument("--fit-weights", type=float, nargs="+", default=[0, 0.5, 1])
    p.add_argument("--box-weights", type=float, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    for path in args.dumps:
        for name, rows in load_sets(path).items():
            n_pos = sum(r["positive"] for r in rows)
            print(f"\n{path} [{name}]: {n_pos} scans with a threat, {len(rows) - n_pos} without\n")
            print(
                "| region score | det. above highest clean | det. 1% FA | det. 5% FA "
                "| mean det. 0-2% FA | AUC | box hit (1% FA) | box hit (all) |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for label, score in cases(args.weights, args.fit_weights, args.box_weights):
                f = figures(rows, score)
                print(
                    f"| {label} | {f['max_clean']:.3f} | {f['det_1']:.3f} | {f['det_5']:.3f} "
                    f"| {f['partial_2']:.3f} | {f['auc']:.3f} | {f['hit_1']:.3f} "
                    f"| {f['hit_all']:.3f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
