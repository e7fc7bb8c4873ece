"""Honest evaluation: embed a reference set and a query set, search, and measure.

The reference side is either a labelled folder (embedded here) or a built gallery (its stored
vectors, best variant per item, exactly as the service searches). Queries are always a
labelled folder ``DIR/<label>/<image>`` embedded with the same model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from index import Gallery
from matcher import Embedder
from matcher.images import load_image
from training.data import dhash, near_copy_roots, scan_folders
from training.metrics import (
    auc,
    confusion_matrix,
    map_at_k,
    operating_point,
    per_label_accuracy,
    recall_at_k,
    roc_curve,
    shared_pictures,
    threat_scores,
    top1_accuracy,
)

log = logging.getLogger(__name__)

RECALL_KS = (1, 5, 10)
# FPR targets for the service thresholds: alert at 1% FPR, review at 5% FPR.
ALERT_FPR, REVIEW_FPR = 0.01, 0.05


@dataclass
class EmbeddedSet:
    """Vectors with their labels and where they came from (one row per image or item)."""

    vectors: np.ndarray
    labels: list[str]
    names: list[str]
    failed: list[str] = field(default_factory=list)
    # dHash per row (embed_folder fills it): finds one picture filed under several labels.
    hashes: list[int] = field(default_factory=list)


@dataclass
class Evaluation:
    """Metrics plus the arrays the report's plots and the notebook need."""

    metrics: dict
    sim: np.ndarray
    queries: EmbeddedSet
    gallery: EmbeddedSet
    roc: dict | None = None


def embed_folder(
    root: str | Path, embedder: Embedder, modality: str = "photo", progress: bool = False
) -> EmbeddedSet:
    """Embed every image of ``root/<label>/``; unreadable images are listed, not fatal."""
    samples = scan_folders(root, modality)
    vecs, labels, names, failed, hashes = [], [], [], [], []
    batch: list = []

    def flush() -> None:
        if batch:
            vecs.append(embedder.embed_tensors(torch.stack(batch)))
            batch.clear()

    for s in tqdm(
        samples, desc=f"embedding {Path(root).name}", unit="img", disable=not progress or None
    ):
        try:
            img = load_image(s.path)
            batch.append(embedder.prepare(img, modality))
        except (ValueError, OSError) as exc:
            log.warning("skipping %s: %s", s.path, exc)
            failed.append(str(s.path))
            continue
        hashes.append(dhash(img))
        labels.append(s.label)
        names.append(str(s.path))
        if len(batch) == embedder.batch_size:
            flush()
    flush()
    v = np.concatenate(vecs) if vecs else np.zeros((0, embedder.dim), np.float32)
    return EmbeddedSet(v, labels, names, failed, hashes)


def gallery_set(gallery: Gallery) -> tuple[EmbeddedSet, np.ndarray]:
    """All stored vector rows of a gallery and, per row, the index of the item it belongs to."""
    items = gallery.items(limit=None)
    rows, owner = [], []
    for i, it in enumerate(items):
        v = gallery.item_vectors(it.item_id)
        rows.append(v)
        owner += [i] * len(v)
    vectors = np.concatenate(rows) if rows else np.zeros((0, gallery.dim), np.float32)
    es = EmbeddedSet(vectors, [it.label for it in items], [it.item_id for it in items])
    return es, np.asarray(owner, dtype=np.int64)


def item_similarity(
    q: np.ndarray, g_rows: np.ndarray, owner: np.ndarray, n_items: int
) -> np.ndarray:
    """(q, items) similarity: the best of each item's vector rows (original and variants)."""
    row_sim = q @ g_rows.T
    sim = np.full((q.shape[0], n_items), -np.inf, dtype=np.float32)
    for j in range(n_items):
        cols = owner == j
        if cols.any():
            sim[:, j] = row_sim[:, cols].max(axis=1)
    return sim


def compute_metrics(
    sim: np.ndarray,
    q_labels: list[str],
    g_labels: list[str],
    threat_labels: list[str] | tuple[str, ...] = (),
) -> tuple[dict, dict | None]:
    """All retrieval metrics, and the threat ROC when threat labels are given."""
    metrics: dict = {
        "queries": len(q_labels),
        "gallery_items": len(g_labels),
        "top1": top1_accuracy(sim, q_labels, g_labels),
        **{f"recall@{k}": recall_at_k(sim, q_labels, g_labels, k) for k in RECALL_KS},
        "map@10": map_at_k(sim, q_labels, g_labels, 10),
        "per_label": per_label_accuracy(sim, q_labels, g_labels),
    }
    labels, cm = confusion_matrix(sim, q_labels, g_labels)
    metrics["confusion"] = {"labels": labels, "matrix": cm.tolist()}
    roc = None
    threats = [t for t in threat_labels if t]
    if threats:
        scores = threat_scores(sim, g_labels, threats)
        positive = np.isin(np.asarray(q_labels, dtype=object), threats)
        roc = roc_curve(scores, positive)
        alert, review = operating_point(roc, ALERT_FPR), operating_point(roc, REVIEW_FPR)
        metrics["threat"] = {
            "labels": threats,
            "positives": int(positive.sum()),
            "negatives": int((~positive).sum()),
            "auc": auc(roc["fpr"], roc["tpr"]),
            "tpr@fpr1%": alert["tpr"],
            "tpr@fpr5%": review["tpr"],
            "alert": alert,
            "review": review,
        }
        roc = {**roc, "scores": scores, "positive": positive}
    return metrics, roc


def evaluate_sets(
    gallery: EmbeddedSet,
    queries: EmbeddedSet,
    threat_labels: list[str] | tuple[str, ...] = (),
    sim: np.ndarray | None = None,
) -> Evaluation:
    """Metrics for already-embedded sets (``sim`` overrides the plain dot product)."""
    sim = queries.vectors @ gallery.vectors.T if sim is None else sim
    metrics, roc = compute_metrics(sim, queries.labels, gallery.labels, threat_labels)
    if len(queries.hashes) == len(queries.labels):
        roots = near_copy_roots([Path(n) for n in queries.names], queries.hashes)
        metrics["shared_pictures"] = shared_pictures(roots, queries.labels)
    return Evaluation(metrics, sim, queries, gallery, roc)


def evaluate(
    gallery_src: str | Path,
    queries: str | Path,
    embedder: Embedder,
    threat_labels: list[str] | tuple[str, ...] = (),
    modality: str = "photo",
    progress: bool = False,
) -> Evaluation:
    """Evaluate ``embedder`` with ``gallery_src`` (folder or gallery dir) against ``queries``."""
    t0 = time.perf_counter()
    gallery_src = Path(gallery_src)
    if (gallery_src / "manifest.json").is_file():
        with Gallery.open(gallery_src, model_id=embedder.model_id) as g:
            gset, owner = gallery_set(g)
        return evaluate_rows(
            gset, owner, queries, embedder, threat_labels, modality, progress, str(gallery_src)
        )
    q = embed_folder(queries, embedder, modality, progress)
    gset = embed_folder(gallery_src, embedder, modality, progress)
    return _describe(evaluate_sets(gset, q, threat_labels), embedder, gallery_src, queries, t0)


def evaluate_rows(
    gset: EmbeddedSet,
    owner: np.ndarray,
    queries: str | Path,
    embedder: Embedder,
    threat_labels: list[str] | tuple[str, ...] = (),
    modality: str = "photo",
    progress: bool = False,
    source: str = "",
) -> Evaluation:
    """Evaluate ``embedder`` against stored gallery rows (``gallery_set``'s output, or a
    promotion's shadow vectors): best row per item, as the service searches."""
    t0 = time.perf_counter()
    q = embed_folder(queries, embedder, modality, progress)
    sim = item_similarity(q.vectors, gset.vectors, owner, len(gset.labels))
    ev = evaluate_sets(gset, q, threat_labels, sim)
    return _describe(ev, embedder, source, queries, t0)


def _describe(ev: Evaluation, embedder: Embedder, gallery_src, queries, t0: float) -> Evaluation:
    q, gset = ev.queries, ev.gallery
    ev.metrics["model_id"] = embedder.model_id
    ev.metrics["gallery_src"] = str(gallery_src)
    ev.metrics["queries_src"] = str(queries)
    ev.metrics["failed_images"] = q.failed + gset.failed
    ev.metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return ev
