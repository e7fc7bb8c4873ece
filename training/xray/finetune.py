"""Fine-tune the backbone's last blocks on generated X-ray crops (part kinds vs. clutter).

The LDA head (``training.xray.head``) is linear on frozen ImageNet features, which barely
separate a small steel slide from a wrench or a battery inside a cluttered parcel. This
trains the unfrozen top of the network with the training/ code (cached frozen-trunk views,
CosFace, early stopping on a held-out set of parcels) on the same crops: region crops of
generated training parcels labelled with the part kind they overlap, or "background", plus
isolated and projected renders of every kind. Only generated data (seeds from
``TRAIN_SEED``) is used; benchmarks evaluate on other seed ranges.

    gunmatch train-xray --out runs/xray-ft
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from matcher import load_model, save_checkpoint
from matcher.model import EmbeddingModel, with_preprocess
from matcher.preprocess import grey_to_tensor
from training.features import frozen_batch
from training.fit import FitConfig, fit
from training.train import prepare_model
from training.trunk import n_blocks
from training.xray.head import XrayHeadConfig, balance, training_crops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class XrayFinetuneConfig:
    """Data, augmentation and optimisation of an X-ray fine-tuning run."""

    crops: XrayHeadConfig = field(
        default_factory=lambda: XrayHeadConfig(
            parcels=300,
            clean_every=5,  # most training parcels carry a part: the rare, valuable crops
            projected_per_kind=60,
            max_per_class=400,
            max_background=2500,
        )
    )
    head_dim: int = 128
    # 8 frozen blocks beat 11 on held-out parcels (val top-1 0.791 vs 0.776; benchmarks notes).
    freeze_blocks: int = 8
    aug_passes: int = 3
    # Every n-th source (parcel or render) is held out for validation and early stopping.
    val_every: int = 8
    gamma: tuple[float, float] = (0.8, 1.25)
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=12, batch_size=64, patience=3))


def augment_transmission(t: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float]):
    """A random right-angle rotation, flip and thickness change (T ** g) of a square crop."""
    out = np.rot90(t, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out ** float(rng.uniform(*gamma)), dtype=np.float32)


def crop_views(
    model: EmbeddingModel,
    crops: Sequence[np.ndarray],
    freeze_blocks: int,
    passes: int,
    seed: int,
    gamma: tuple[float, float],
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """(1 + passes, n, C, H, W) float16 frozen-trunk outputs; view 0 is the clean crop."""
    pre = model.config.preprocess
    views = []
    bar = tqdm(total=len(crops) * (1 + passes), desc="caching crops", disable=not progress or None)
    for p in range(1 + passes):
        rng = np.random.default_rng([seed, p])
        out = []
        for i in range(0, len(crops), batch_size):
            chunk = crops[i : i + batch_size]
            if p:
                chunk = [augment_transmission(c, rng, gamma) for c in chunk]
            x = torch.stack([grey_to_tensor(c, pre) for c in chunk])
            out.append(frozen_batch(model, x, freeze_blocks))
            bar.update(len(chunk))
        views.append(torch.cat(out))
    bar.close()
    return torch.stack(views)


def finetune_xray(cfg: XrayFinetuneConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Generate crops, fine-tune, save a self-describing checkpoint; returns the report."""
    torch.set_num_threads(cfg.crops.threads)
    torch.manual_seed(cfg.fit.seed)
    times: dict[str, float] = {}
    start = time.perf_counter()
    model = prepare_model(cfg.crops.backbone, cfg.head_dim)
    model = with_preprocess(model, input_size=cfg.crops.input_size)
    if not 0 <= cfg.freeze_blocks < n_blocks(model):
        raise ValueError(f"freeze_blocks must be in [0, {n_blocks(model) - 1}]")
    groups: list[int] = []
    crops, labels = training_crops(cfg.crops, groups)
    rng = np.random.default_rng(cfg.crops.seed)
    keep = balance(labels, cfg.crops.max_per_class, rng, {"background": cfg.crops.max_background})
    crops = [crops[i] for i in keep]
    labels = [labels[i] for i in keep]
    groups = [groups[i] for i in keep]
    names = sorted(set(labels))
    y = np.array([names.index(lab) for lab in labels])
    val = np.array([g % cfg.val_every == 0 for g in groups])
    train_idx, val_idx = np.flatnonzero(~val).tolist(), np.flatnonzero(val).tolist()
    times["crops"] = round(time.perf_counter() - start, 1)

    clock = time.perf_counter()
    views = crop_views(
        model, crops, cfg.freeze_blocks, cfg.aug_passes, cfg.fit.seed, cfg.gamma, progress=progress
    )
    times["cache"] = round(time.perf_counter() - clock, 1)
    del crops
    result = fit(
        model, views, y, train_idx, val_idx, cfg.freeze_blocks, cfg.fit, len(names), None, progress
    )
    times["fit"] = result.seconds
    times["total"] = round(time.perf_counter() - start, 1)
    model.weights_sha256 = None  # trained weights: never a reference to the bundled ones
    report = {
        "kind": "xray-finetune",
        "config": asdict(cfg),
        "samples": len(labels),
        "train_samples": len(train_idx),
        "val_samples": len(val_idx),
        "class_counts": {c: labels.count(c) for c in names},
        "labels": names,
        "fit": result.to_dict(),
        "seconds": times,
        "data": "generated only (synth), seeds from TRAIN_SEED",
    }
    out = save_checkpoint(model.eval(), out_dir, card=report)
    report["model_id"] = load_model(out).model_id
    (Path(out) / "train_config.json").write_text(json.dumps(report, indent=2, default=str))
    return report
