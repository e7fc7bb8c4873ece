"""``train(config) -> report``: fine-tune the bundled backbone on labelled images.

Steps: collect samples (folders and/or a gallery with its analyst feedback) -> decode once ->
group near-copies -> grouped train/val split -> cache frozen-trunk outputs for a clean and N
augmented views -> metric learning on the unfrozen top -> self-describing checkpoint whose
card records base, data hash, config and metrics (``training.json`` holds the full report).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from matcher.model import (
    EmbeddingModel,
    ModelConfig,
    load_model,
    save_checkpoint,
    with_preprocess,
)
from matcher.preprocess import check_modality
from training.augment import AugmentConfig
from training.data import (
    Sample,
    assign_groups,
    co_labels,
    grouped_split,
    load_images,
    scan_folders,
)
from training.features import cache_views
from training.feedback import FeedbackSet, gallery_samples
from training.fit import FitConfig, fit
from training.trunk import n_blocks

log = logging.getLogger(__name__)


# The photo recipe (docs/benchmarks.md, "Training"): on weapon-types' validation split 288 px
# beat 224; 8 frozen blocks and 3 augmented views per image. The length is counted in
# optimiser steps, not epochs: at least PHOTO_MIN_STEPS batches (weapon-types' 949 images: 10
# epochs; handgun-brands' 115 images: 4 batches an epoch, PHOTO_MAX_EPOCHS), never fewer than
# PHOTO_EPOCHS epochs. Both datasets' validation splits gained from the longer schedules; 300
# steps (about 1.2-1.5 s each on 2 cores) keep 500 images within the 10-minute budget.
PHOTO_INPUT_SIZE = 288
PHOTO_EPOCHS = 6
PHOTO_MIN_STEPS = 300
PHOTO_MAX_EPOCHS = 48


def decode_side(input_size: int) -> int:
    """Longest side images are decoded at for training at ``input_size``: a ninth of headroom
    for the augmentations' crops (320 px at 288), never below 320."""
    return max(320, math.ceil(input_size * 10 / 9))


def photo_fit(**changes) -> FitConfig:
    """The photo recipe's optimisation: ``PHOTO_EPOCHS`` epochs, else ``FitConfig``'s."""
    return replace(FitConfig(epochs=PHOTO_EPOCHS), **changes)


def scheduled_epochs(epochs: int, n_train: int, batch_size: int, min_steps: int) -> int:
    """``epochs``, raised until an epoch's batches add up to ``min_steps`` (at most
    ``PHOTO_MAX_EPOCHS``; never lowered): small datasets get the steps they need to train."""
    per_epoch = max(1, math.ceil(n_train / batch_size))
    wanted = math.ceil(min_steps / per_epoch)
    return max(epochs, min(wanted, PHOTO_MAX_EPOCHS))


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written next to the checkpoint."""

    out: str
    data: str | None = None
    gallery: str | None = None
    feedback_db: str | None = None
    base: str = "efficientnet_lite0"
    modality: str = "photo"
    head_dim: int | None = None
    # The input size trained and served at; the checkpoint records it. None: a trained base
    # (a model directory) keeps its own, a bare backbone gets PHOTO_INPUT_SIZE (288 px beat
    # 224 on weapon-types' validation split, docs/benchmarks.md "Training").
    input_size: int | None = None
    # Blocks 8+ (the last 112-, 192- and 320-channel stages of Lite0) are trained.
    freeze_blocks: int = 8
    aug_passes: int = 3
    # Epochs are raised to reach this many optimiser steps (0: exactly ``fit.epochs``).
    min_steps: int = PHOTO_MIN_STEPS
    # Share of the images held out for early stopping. 0 (the default) trains on all of them
    # for ``fit.epochs``, the number the validation split chose.
    val_fraction: float = 0.0
    # Longest side of the decoded images; None: ``decode_side`` of the input size.
    max_side: int | None = None
    threads: int | None = None
    progress: bool = True
    fit: FitConfig = field(default_factory=photo_fit)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class TrainReport:
    """What a run produced and measured."""

    model_dir: str
    model_id: str
    base_model_id: str
    labels: list[str]
    samples: int
    train_samples: int
    val_samples: int
    groups: int
    data_sha256: str
    seconds: dict[str, float]
    fit: dict
    config: dict

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def collect_samples(cfg: TrainConfig, feedback: FeedbackSet | None = None) -> list[Sample]:
    """Samples from ``cfg.data`` folders and/or ``cfg.gallery`` with its feedback: the rows
    handed in, else those in ``cfg.feedback_db`` (default ``<gallery>/state.sqlite``)."""
    samples: list[Sample] = []
    if cfg.data:
        samples += scan_folders(cfg.data, cfg.modality)
    if cfg.gallery:
        samples += gallery_samples(cfg.gallery, cfg.feedback_db, feedback)
    if not samples:
        raise ValueError("no training data: give a DATA folder and/or a gallery")
    return samples


def data_hash(samples: list[Sample]) -> str:
    """sha256 over (label, image bytes hash, negatives) of every sample, order-independent."""
    rows = []
    for s in samples:
        digest = hashlib.sha256(s.path.read_bytes()).hexdigest()
        rows.append(f"{s.label}\t{digest}\t{','.join(sorted(s.negatives))}")
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def prepare_model(base: str, head_dim: int | None) -> EmbeddingModel:
    """The base model, with a fresh orthogonal projection head when ``head_dim`` asks for one."""
    model = load_model(base)
    if not head_dim or model.config.head_dim == head_dim:
        return model
    config = ModelConfig(**{**model.config.__dict__, "head_dim": head_dim})
    new = EmbeddingModel(config, pretrained_backbone=False)
    new.backbone.load_state_dict(model.backbone.state_dict())
    torch.nn.init.orthogonal_(new.head.weight)
    return new.eval()


def train(cfg: TrainConfig, feedback: FeedbackSet | None = None) -> TrainReport:
    """Run one training job and save the checkpoint at ``cfg.out``; returns the report.
    ``feedback``: the gallery's analyst feedback, where the caller found it (a shared
    gallery keeps it in PostgreSQL: ``gunmatch.feedback.train_on_gallery`` reads it)."""
    check_modality(cfg.modality)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.fit.seed)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    model = prepare_model(cfg.base, cfg.head_dim)
    size = cfg.input_size or (None if Path(cfg.base).is_dir() else PHOTO_INPUT_SIZE)
    if size and size != model.config.preprocess.input_size:
        model = with_preprocess(model, input_size=size)
    max_side = cfg.max_side or decode_side(model.config.preprocess.input_size)
    samples, images = load_images(collect_samples(cfg, feedback), max_side)
    if not samples:
        raise ValueError("none of the training images could be read")
    assign_groups(samples, images)
    labels_sorted = sorted({s.label for s in samples if s.label} | _neg_labels(samples))
    if len(labels_sorted) < 2:
        raise ValueError(f"need at least 2 labels to learn from, found {labels_sorted}")
    index = {lab: i for i, lab in enumerate(labels_sorted)}
    labels = np.array([index[s.label] if s.label else -1 for s in samples])
    negatives = {i: [index[n] for n in s.negatives] for i, s in enumerate(samples) if s.negatives}
    train_idx, val_idx = grouped_split(samples, cfg.val_fraction, cfg.fit.seed)
    epochs = scheduled_epochs(cfg.fit.epochs, len(train_idx), cfg.fit.batch_size, cfg.min_steps)
    cfg = replace(cfg, fit=replace(cfg.fit, epochs=epochs))
    times["load"] = round(time.perf_counter() - t0, 2)

    base_id = load_model(cfg.base).model_id if cfg.head_dim else model.model_id
    if not 0 <= cfg.freeze_blocks < n_blocks(model):
        raise ValueError(f"freeze_blocks must be in [0, {n_blocks(model) - 1}]")
    t1 = time.perf_counter()
    total = len(images) * (1 + cfg.aug_passes)
    with tqdm(
        total=total, desc="caching features", unit="img", disable=not cfg.progress or None
    ) as bar:
        views = cache_views(
            model,
            images,
            [s.modality for s in samples],
            cfg.freeze_blocks,
            cfg.aug_passes,
            cfg.fit.seed,
            cfg.augment,
            on_batch=bar.update,
        )
    times["cache"] = round(time.perf_counter() - t1, 2)
    del images
    result = fit(
        model,
        views,
        labels,
        train_idx,
        val_idx,
        cfg.freeze_blocks,
        cfg.fit,
        len(labels_sorted),
        negatives,
        cfg.progress,
        co_labels(samples, index),
    )
    times["fit"] = result.seconds
    times["total"] = round(time.perf_counter() - t0, 2)

    digest = data_hash(samples)
    card = {
        "base": cfg.base,
        "base_model_id": base_id,
        "data_sha256": digest,
        "labels": labels_sorted,
        "samples": len(samples),
        "modality": cfg.modality,
        "train_config": cfg.to_dict(),
        "metrics": {"val_top1": result.best_val_top1, "best_epoch": result.best_epoch},
        "seconds": times,
    }
    # The weights changed: drop the base's recorded hash, so save_checkpoint writes them
    # (is_bundled answers at once, without loading the wheel's file to compare tensors).
    model.weights_sha256 = None
    out = save_checkpoint(model, cfg.out, card)
    report = TrainReport(
        model_dir=str(out),
        model_id=model.model_id,
        base_model_id=base_id,
        labels=labels_sorted,
        samples=len(samples),
        train_samples=len(train_idx),
        val_samples=len(val_idx),
        groups=len({s.group for s in samples}),
        data_sha256=digest,
        seconds=times,
        fit=result.to_dict(),
        config=cfg.to_dict(),
    )
    (out / "training.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def _neg_labels(samples: list[Sample]) -> set[str]:
    return {n for s in samples for n in s.negatives}
