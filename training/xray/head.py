"""A small X-ray embedding head fitted on *generated* data only (closed form, CPU minutes).

ImageNet features of parcel crops are dominated by clutter and barely separate a slide from
a phone. This fits a linear projection on top of the frozen backbone (``ModelConfig.head_dim``)
by regularised linear discriminant analysis: classes are the generator's part kinds plus a
"background" class, samples are region crops of generated training parcels (the same
proposals and crops screening uses) and isolated renders. The result is a normal
self-describing checkpoint (``matcher.save_checkpoint``) to build an X-ray gallery with.

Training parcels use their own seed range (``TRAIN_SEED``); benchmarks evaluate on others.

    gunmatch train-xray --method lda --out runs/xray-lda  # about 5-11 min on 2 cores
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from matcher import load_model, save_checkpoint
from matcher.model import EmbeddingModel, ModelConfig, build_pretrained
from matcher.preprocess import grey_to_tensor, letterbox_grey
from screening.augment import AugmentConfig, projected_variants
from screening.regions import ProposalConfig, iou, propose_regions
from screening.screen import crop_boxes, crop_transmission
from synth.shapes import PART_KINDS, THREAT_KINDS
from synth.styles import StyleSampler
from synth.xray import render_isolated
from training.xray.styled import training_parcel

log = logging.getLogger(__name__)

TRAIN_SEED = 40_000_000  # training parcels and isolated renders; never used for evaluation
BACKGROUND = "background"


@dataclass(frozen=True)
class XrayHeadConfig:
    """What the head is fitted on and how."""

    backbone: str = "efficientnet_lite0"
    input_size: int = 112
    parcels: int = 200
    # Every n-th training parcel has no threat part (the others have one).
    clean_every: int = 3
    parcel_size: tuple[int, int] = (1200, 940)
    isolated_per_kind: int = 6
    # Threat image projection: isolated threat renders multiplied into training backgrounds.
    projected_per_kind: int = 20
    regions: int = 48
    dims: int = 48
    pca_dims: int = 256
    shrinkage: float = 0.1
    max_per_class: int = 150
    # Background (clutter) crops carry the false alarms, so they get a larger share.
    max_background: int = 600
    seed: int = TRAIN_SEED
    threads: int = 2
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    # Domain randomisation: training parcels in a style drawn for each seed, cropped from
    # their decoded export; None renders today's parcels.
    styles: StyleSampler | None = None


def label_crops(
    boxes: np.ndarray,
    threat: list[tuple[tuple[int, int, int, int], str]],
    clutter: list[tuple[tuple[int, int, int, int], str]],
    min_iou: float = 0.3,
) -> list[str]:
    """Each box's kind: the threat or clutter item it overlaps best, else background."""
    named = [
        (b, k)
        for b, k in threat + clutter
        if k not in ("clothes", "suitcase", "carton", "soft_bag")
    ]
    if not named or len(boxes) == 0:
        return [BACKGROUND] * len(boxes)
    overlaps = iou(boxes, np.array([b for b, _ in named], dtype=np.float64))
    best = overlaps.argmax(axis=1)
    return [named[j][1] if overlaps[i, j] >= min_iou else BACKGROUND for i, j in enumerate(best)]


def training_crops(
    cfg: XrayHeadConfig, groups: list[int] | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """Region crops of generated parcels and isolated renders, with their kind labels.

    ``groups``, when given, receives each crop's source (parcel index, or ``parcels + 1000 j + s``
    for render s of kind j) so a validation split can keep sources apart.
    """
    crops: list[np.ndarray] = []
    labels: list[str] = []
    groups = groups if groups is not None else []
    proposals = ProposalConfig(**{**asdict(cfg.proposals), "max_regions": cfg.regions})
    for i in range(cfg.parcels):
        kind = THREAT_KINDS[i % len(THREAT_KINDS)] if i % cfg.clean_every else None
        p, image = training_parcel(cfg.seed + i, cfg.parcel_size, kind, cfg.styles)
        boxes, _ = propose_regions(image, proposals)
        h, w = image.shape
        windows = crop_boxes(boxes, w, h, 0.15, 48)
        names = label_crops(
            boxes,
            [(b.as_tuple(), b.kind) for b in p.boxes],
            [(b.as_tuple(), b.kind) for b in p.clutter],
        )
        for win, name in zip(windows, names, strict=True):
            crops.append(crop_transmission(image, win, cfg.input_size))
            labels.append(name)
            groups.append(i)
    tip = AugmentConfig(variants=1, seed=cfg.seed + 2_000_000)
    for j, kind in enumerate(PART_KINDS):
        for s in range(max(cfg.isolated_per_kind, cfg.projected_per_kind)):
            seed = cfg.seed + 1_000_000 + 100 * j + s
            ref = render_isolated(kind, seed, 256).transmission
            if s < cfg.isolated_per_kind:
                crops.append(letterbox_grey(ref, cfg.input_size))
                labels.append(kind)
                groups.append(cfg.parcels + 1000 * j + s)
            if s < cfg.projected_per_kind and PART_KINDS[kind].threat:
                rng = np.random.default_rng(seed)
                for crop in projected_variants(ref, tip, cfg.input_size, rng):
                    crops.append(crop)
                    labels.append(kind)
                    groups.append(cfg.parcels + 1000 * j + s)
    return crops, labels


def balance(
    labels: list[str], cap: int, rng: np.random.Generator, caps: dict[str, int] | None = None
) -> np.ndarray:
    """Indices keeping at most ``cap`` samples per label (``caps`` overrides per label)."""
    keep = []
    for name in sorted(set(labels)):
        idx = np.flatnonzero(np.array(labels) == name)
        keep.extend(rng.permutation(idx)[: (caps or {}).get(name, cap)].tolist())
    return np.array(sorted(keep))


def fit_lda(x: np.ndarray, y: list[str], dims: int, pca_dims: int, shrinkage: float) -> np.ndarray:
    """Projection (dims, d) maximising between- over within-class scatter, mean direction removed.

    The head has no bias, so instead of centring, the mean feature direction is projected
    out; all GeM features are positive, so that direction carries little identity.
    """
    mu = x.mean(axis=0)
    xc = x - mu
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(pca_dims, vt.shape[0])
    pca = vt[:k] / (s[:k, None] / np.sqrt(len(x)) + 1e-6)  # whitening rows
    z = xc @ pca.T
    classes = sorted(set(y))
    ya = np.array(y)
    means = np.stack([z[ya == c].mean(axis=0) for c in classes])
    within = sum(np.cov(z[ya == c].T, bias=True) * (ya == c).sum() for c in classes) / len(z)
    within = (1 - shrinkage) * within + shrinkage * np.eye(k) * np.trace(within) / k
    between = np.cov(means.T, bias=True)
    evals, evecs = np.linalg.eig(np.linalg.solve(within, between))
    order = np.argsort(-evals.real)[: min(dims, len(classes) - 1)]
    w = evecs[:, order].real.T @ pca  # (dims, d)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    u = mu / np.linalg.norm(mu)
    return (w - np.outer(w @ u, u)).astype(np.float32)


def train_xray_head(cfg: XrayHeadConfig, out_dir: str | Path) -> dict:
    """Fit the head on generated data, save a checkpoint to ``out_dir``; returns a report."""
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    crops, labels = training_crops(cfg)
    rng = np.random.default_rng(cfg.seed)
    keep = balance(labels, cfg.max_per_class, rng, {BACKGROUND: cfg.max_background})
    crops = [crops[i] for i in keep]
    labels = [labels[i] for i in keep]
    base = build_pretrained(cfg.backbone)
    pre = base.config.preprocess
    pre = type(pre)(**{**asdict(pre), "input_size": cfg.input_size})
    feats = []
    with torch.inference_mode():
        for i in range(0, len(crops), 64):
            batch = torch.stack([grey_to_tensor(c, pre) for c in crops[i : i + 64]])
            feats.append(base.pooled(batch).numpy())
    x = np.concatenate(feats).astype(np.float64)
    w = fit_lda(x, labels, cfg.dims, cfg.pca_dims, cfg.shrinkage)
    config = ModelConfig(backbone=cfg.backbone, head_dim=w.shape[0], preprocess=pre)
    model = EmbeddingModel(config, pretrained_backbone=False)
    model.backbone.load_state_dict(base.backbone.state_dict())
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(w))  # type: ignore[union-attr]
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    report = {
        "kind": "xray-lda-head",
        "config": {**asdict(cfg), "proposals": asdict(cfg.proposals)},
        "samples": len(labels),
        "class_counts": counts,
        "dims": int(w.shape[0]),
        "seconds": round(time.perf_counter() - start, 1),
        "data": "generated only (synth), seeds from TRAIN_SEED",
    }
    out = save_checkpoint(model.eval(), out_dir, card=report)
    (Path(out) / "train_config.json").write_text(json.dumps(report, indent=2))
    check = load_model(out)
    report["model_id"] = check.model_id
    return report
