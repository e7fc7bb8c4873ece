"""Write an evaluation to disk: metrics.json, ROC and confusion PNGs, report.md, embeddings,
and (on request) the service's calibration file.

Threshold choice: ``alert`` at the highest-TPR operating point with FPR <= 1%, ``review`` at
the one with FPR <= 5% (the service alerts on score >= alert, reviews on score >= review).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from index.files import atomic_write
from training.evaluate import ALERT_FPR, REVIEW_FPR, Evaluation

# No cosine similarity exceeds 1, so a threshold above it never fires: used when no
# threshold reaches the FPR target with any true positive.
NEVER = 1.0001


def _finite(x: float) -> float:
    return NEVER if not math.isfinite(x) else float(x)


def _clean(obj):
    """Make metrics JSON-safe: NaN/inf become None, numpy scalars become floats."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(ev: Evaluation, out_dir: str | Path, plots: bool = True) -> Path:
    """Write the report files into ``out_dir``; returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_clean(ev.metrics), indent=2))
    arrays = {
        "query_vectors": ev.queries.vectors,
        "query_labels": np.asarray(ev.queries.labels, dtype=str),
        "gallery_vectors": ev.gallery.vectors,
        "gallery_labels": np.asarray(ev.gallery.labels, dtype=str),
    }
    if ev.roc is not None:
        arrays.update({f"roc_{k}": np.asarray(v) for k, v in ev.roc.items()})
    np.savez_compressed(out / "embeddings.npz", **arrays)
    if plots:
        plot_confusion(ev.metrics["confusion"], out / "confusion.png")
        if ev.roc is not None:
            plot_roc(ev.roc, ev.metrics["threat"], out / "roc.png")
    (out / "report.md").write_text(markdown_report(ev.metrics, plots))
    return out


def plot_roc(roc: dict, threat: dict, path: Path) -> None:
    """ROC curve with the alert and review operating points marked."""
    import matplotlib  # the optional [train] extra: only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"AUC {threat['auc']:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    for name, colour in (("alert", "red"), ("review", "orange")):
        p = threat[name]
        ax.scatter(
            [p["fpr"]],
            [p["tpr"]],
            c=colour,
            zorder=3,
            label=f"{name}: score >= {_finite(p['threshold']):.3f}",
        )
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("threat screening ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(confusion: dict, path: Path) -> None:
    """Confusion matrix of true label vs nearest item's label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, cm = confusion["labels"], np.asarray(confusion["matrix"])
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("nearest reference's label")
    ax.set_ylabel("query label")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def shared_pictures_text(m: dict) -> str | None:
    """One sentence on queries filed under several labels, or None where there are none."""
    shared = m.get("shared_pictures")
    if not shared or not shared["queries"]:
        return None
    pictures = f"{shared['pictures']} picture{'s' if shared['pictures'] != 1 else ''}"
    return (
        f"{shared['queries']} queries are {pictures} filed under several labels; top-1 can "
        f"be right for one label of each, so at most {shared['top1_ceiling']:.4f}"
    )


def _shared_line(m: dict) -> list[str]:
    text = shared_pictures_text(m)
    return [f"Note: {text}.", ""] if text else []


def markdown_report(m: dict, plots: bool = True) -> str:
    """A short human-readable summary of metrics.json."""
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{m.get('model_id', '?')}`",
        f"- gallery: `{m.get('gallery_src', '?')}` ({m['gallery_items']} references)",
        f"- queries: `{m.get('queries_src', '?')}` ({m['queries']} images)",
        "",
        *_shared_line(m),
        "| metric | value |",
        "|---|---|",
        f"| top-1 accuracy | {m['top1']:.4f} |",
        *(f"| {k} | {m[k]:.4f} |" for k in ("recall@1", "recall@5", "recall@10", "map@10")),
        "",
        "| label | queries | top-1 | recall@5 | mAP@10 |",
        "|---|---|---|---|---|",
        *(
            f"| {lab} | {v['queries']} | {v['accuracy']:.3f} | {v['recall@5']:.3f} "
            f"| {v['map@10']:.3f} |"
            for lab, v in m["per_label"].items()
        ),
    ]
    t = m.get("threat")
    if t:
        lines += [
            "",
            f"## Threat screening ({', '.join(t['labels'])}: "
            f"{t['positives']} threat / {t['negatives']} other queries)",
            "",
            f"AUC {t['auc']:.4f}. Score = best similarity to a threat reference.",
            "",
            "| operating point | threshold | TPR | FPR |",
            "|---|---|---|---|",
        ]
        for name, target in (("alert", ALERT_FPR), ("review", REVIEW_FPR)):
            p = t[name]
            lines.append(
                f"| {name} (FPR <= {target:.0%}) | {_finite(p['threshold']):.4f} | "
                f"{p['tpr']:.3f} | {p['fpr']:.3f} |"
            )
    if plots:
        lines += ["", "![confusion](confusion.png)"]
        if t:
            lines.append("![ROC](roc.png)")
    return "\n".join(lines) + "\n"


def calibration_from_metrics(metrics: dict, source: str) -> dict:
    """The service's calibration record for the thresholds chosen in ``metrics``."""
    t = metrics.get("threat")
    if not t:
        raise ValueError("no threat metrics: give --threat-labels to calibrate thresholds")
    alert = _finite(t["alert"]["threshold"])
    review = min(_finite(t["review"]["threshold"]), alert)
    return {
        "model_id": metrics["model_id"],
        "alert_threshold": round(alert, 6),
        "review_threshold": round(review, 6),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "metrics": _clean(
            {
                "auc": t["auc"],
                "tpr_at_alert": t["alert"]["tpr"],
                "fpr_at_alert": t["alert"]["fpr"],
                "tpr_at_review": t["review"]["tpr"],
                "fpr_at_review": t["review"]["fpr"],
                "top1": metrics["top1"],
                "queries": metrics["queries"],
            }
        ),
    }


def write_calibration(metrics: dict, path: str | Path, source: str) -> Path:
    """Write the calibration JSON atomically (the service may be reading it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(calibration_from_metrics(metrics, source), indent=2).encode())
    return path
