"""Retrieval and screening metrics: pure functions on similarity matrices and scores.

Retrieval: query i is correct at rank r when the r-th most similar gallery item carries the
query's label. Screening (threat labels): a query's score is its best similarity to any
threat-labelled gallery item, the number the service compares with its thresholds; queries
whose label is a threat label are the positives.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def ranking(sim: np.ndarray, k: int | None = None) -> np.ndarray:
    """(q, g) similarities -> (q, k) gallery indices, most similar first (stable on ties)."""
    k = sim.shape[1] if k is None else min(k, sim.shape[1])
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def _hits(sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str], k: int) -> np.ndarray:
    order = ranking(sim, k)
    g = np.asarray(g_labels, dtype=object)
    return g[order] == np.asarray(q_labels, dtype=object)[:, None]


def shared_pictures(groups: Sequence[int], labels: Sequence[str]) -> dict:
    """Queries that are one picture filed under several labels (``groups``: a near-copy group
    per query). Such a picture's copies all find the same references, so top-1 can be right
    for one of its labels only: ``top1_ceiling`` is the best top-1 any model can reach."""
    by_group: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for g, lab in zip(groups, labels, strict=True):
        by_group[g][lab] += 1
    shared = [c for c in by_group.values() if len(c) > 1]
    files = sum(sum(c.values()) for c in shared)
    misses = sum(sum(c.values()) - max(c.values()) for c in shared)
    n = len(labels)
    return {
        "pictures": len(shared),
        "queries": files,
        "top1_ceiling": 1.0 - misses / n if n else float("nan"),
    }


def top1_accuracy(sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str]) -> float:
    """Fraction of queries whose nearest gallery item has their label."""
    if len(q_labels) == 0:
        return float("nan")
    return float(_hits(sim, q_labels, g_labels, 1)[:, 0].mean())


def recall_at_k(sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str], k: int) -> float:
    """Fraction of queries with at least one same-label item among the k nearest."""
    if len(q_labels) == 0:
        return float("nan")
    return float(_hits(sim, q_labels, g_labels, k).any(axis=1).mean())


def average_precision(
    sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str], k: int = 10
) -> np.ndarray:
    """Each query's average precision over the top k, normalised by min(k, #relevant)."""
    hits = _hits(sim, q_labels, g_labels, k).astype(np.float64)
    counts = defaultdict(int)
    for lab in g_labels:
        counts[lab] += 1
    n_rel = np.array([min(k, counts.get(lab, 0)) for lab in q_labels], dtype=np.float64)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return np.where(n_rel > 0, (precision * hits).sum(axis=1) / np.maximum(n_rel, 1), 0.0)


def map_at_k(
    sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str], k: int = 10
) -> float:
    """Mean average precision over the top k; AP is normalised by min(k, #relevant)."""
    if len(q_labels) == 0:
        return float("nan")
    return float(average_precision(sim, q_labels, g_labels, k).mean())


def per_label_accuracy(
    sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str]
) -> dict[str, dict]:
    """For each query label: top-1 accuracy, recall@5, mAP@10 and the query count."""
    hits = _hits(sim, q_labels, g_labels, 5)
    ap = average_precision(sim, q_labels, g_labels, 10)
    q = np.asarray(q_labels, dtype=object)
    out: dict[str, dict] = {}
    for lab in sorted(set(q_labels)):
        idx = np.flatnonzero(q == lab)
        out[lab] = {
            "accuracy": float(hits[idx, 0].mean()),
            "recall@5": float(hits[idx].any(axis=1).mean()),
            "map@10": float(ap[idx].mean()),
            "queries": len(idx),
        }
    return out


def confusion_matrix(
    sim: np.ndarray, q_labels: Sequence[str], g_labels: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Labels and (true, predicted-by-nearest-item) counts."""
    labels = sorted(set(q_labels) | set(g_labels))
    pos = {lab: i for i, lab in enumerate(labels)}
    pred = np.asarray(g_labels, dtype=object)[ranking(sim, 1)[:, 0]] if len(q_labels) else []
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(q_labels, pred, strict=True):
        cm[pos[t], pos[p]] += 1
    return labels, cm


def threat_scores(
    sim: np.ndarray, g_labels: Sequence[str], threat_labels: Sequence[str]
) -> np.ndarray:
    """Best similarity of each query to any threat-labelled gallery item (-1 if none)."""
    mask = np.isin(np.asarray(g_labels, dtype=object), list(threat_labels))
    if not mask.any():
        return np.full(sim.shape[0], -1.0)
    return sim[:, mask].max(axis=1)


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """ROC of the rule ``score >= threshold``: one point per distinct score, plus (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs both threat and non-threat queries")
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    tp, fp = np.cumsum(p), np.cumsum(~p)
    last = np.r_[s[1:] != s[:-1], True]  # keep the last index of each run of equal scores
    tpr = np.r_[0.0, tp[last] / n_pos]
    fpr = np.r_[0.0, fp[last] / n_neg]
    thr = np.r_[np.inf, s[last]]
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr}


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve by the trapezoid rule."""
    return float(np.trapezoid(tpr, fpr))


def operating_point(roc: dict[str, np.ndarray], max_fpr: float) -> dict[str, float]:
    """Highest-TPR point with FPR <= ``max_fpr``: its threshold, TPR and actual FPR."""
    ok = np.nonzero(roc["fpr"] <= max_fpr + 1e-12)[0]
    i = int(ok[np.argmax(roc["tpr"][ok])])
    return {
        "threshold": float(roc["thresholds"][i]),
        "tpr": float(roc["tpr"][i]),
        "fpr": float(roc["fpr"][i]),
        "max_fpr": float(max_fpr),
    }
