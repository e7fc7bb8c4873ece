"""The optimisation loop on cached frozen-trunk features, with validation and early stopping."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from matcher.model import EmbeddingModel
from training.losses import ProxyLoss, create_loss, hard_negative_hinge, multi_similarity
from training.metrics import top1_accuracy
from training.trunk import trainable_forward, trainable_parameters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "cosface"
    patience: int = 4
    hard_negative_weight: float = 1.0
    # A picture filed under several labels (its near-copies carry others): "keep" trains each
    # copy towards its label and away from the rest, "mask" leaves the copy's other labels out
    # of its softmax, "drop" leaves such copies out of the loss (they stay references).
    co_labels: str = "keep"
    # How batches are drawn for proxy losses: "random" (a shuffled epoch) or "balanced"
    # (each batch holds every label, or as many as fit two images each, in equal numbers).
    sampler: str = "random"
    seed: int = 0


@dataclass
class FitResult:
    """Per-epoch history and the epoch whose weights were kept."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_top1: float = float("nan")
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def embed_cached(
    model: EmbeddingModel, fmaps: torch.Tensor, freeze_blocks: int, batch_size: int = 64
) -> np.ndarray:
    """Embeddings of cached feature maps (no gradients)."""
    out = []
    with torch.inference_mode():
        for i in range(0, fmaps.shape[0], batch_size):
            out.append(trainable_forward(model, fmaps[i : i + batch_size].float(), freeze_blocks))
    if not out:
        return np.zeros((0, model.dim), dtype=np.float32)
    return torch.cat(out).numpy()


def validation_top1(
    model: EmbeddingModel,
    views: torch.Tensor,
    labels: np.ndarray,
    train_idx: list[int],
    val_idx: list[int],
    freeze_blocks: int,
) -> float:
    """Top-1 of clean validation views searched against clean training views."""
    ref = [i for i in train_idx if labels[i] >= 0]
    val = [i for i in val_idx if labels[i] >= 0]
    if not ref or not val:
        return float("nan")
    g = embed_cached(model, views[0, ref], freeze_blocks)
    q = embed_cached(model, views[0, val], freeze_blocks)
    return top1_accuracy(q @ g.T, labels[val].tolist(), labels[ref].tolist())


def _batches(labels: np.ndarray, idx: list[int], cfg: FitConfig, rng: np.random.Generator):
    """Random batches; for pair losses, P labels x K samples so every batch has positives;
    with ``cfg.sampler`` "balanced", label-balanced batches (``_balanced_batches``)."""
    idx = np.asarray(idx)
    if cfg.sampler == "balanced":
        yield from _balanced_batches(labels, idx, cfg.batch_size, rng)
        return
    if cfg.loss != "multi_similarity":
        order = rng.permutation(idx)
        for i in range(0, len(order), cfg.batch_size):
            yield order[i : i + cfg.batch_size]
        return
    k = 4
    by_label = {lab: rng.permutation(idx[labels[idx] == lab]) for lab in np.unique(labels[idx])}
    chunks = [v[i : i + k] for v in by_label.values() for i in range(0, len(v), k) if len(v) > 1]
    order = rng.permutation(len(chunks))
    per = max(2, cfg.batch_size // k)
    for i in range(0, len(order), per):
        yield np.concatenate([chunks[j] for j in order[i : i + per]])


def _balanced_batches(
    labels: np.ndarray, idx: np.ndarray, batch_size: int, rng: np.random.Generator
):
    """As many batches as a shuffled epoch, each of P labels x K images (P labels taken in
    turn from a shuffled cycle, at most ``batch_size // 2`` of them; K = ``batch_size // P``).
    Each label's images are drawn in a shuffled cycle, so a small label repeats within an
    epoch and a large one waits for the next. Images without a label (-1: analyst
    rejections only) form a group of their own."""
    groups = [idx[labels[idx] == lab] for lab in np.unique(labels[idx])]
    p = max(1, min(len(groups), batch_size // 2))
    k = max(1, batch_size // p)
    queues = [rng.permutation(g) for g in groups]
    heads = [0] * len(groups)
    cycle: list[int] = []
    for _ in range(math.ceil(len(idx) / batch_size)):
        chosen: list[int] = []
        while len(chosen) < p:
            if not cycle:
                cycle = list(rng.permutation(len(groups)))
            g = int(cycle.pop())
            if g in chosen:  # a fresh cycle began inside this batch: it waits its turn
                cycle.insert(0, g)
            else:
                chosen.append(g)
        batch = []
        for g in chosen:
            for _ in range(k):
                if heads[g] == len(queues[g]):
                    queues[g], heads[g] = rng.permutation(groups[g]), 0
                batch.append(queues[g][heads[g]])
                heads[g] += 1
        yield np.asarray(batch)


def fit(
    model: EmbeddingModel,
    views: torch.Tensor,
    labels: np.ndarray,
    train_idx: list[int],
    val_idx: list[int],
    freeze_blocks: int,
    cfg: FitConfig,
    n_classes: int,
    negatives: dict[int, list[int]] | None = None,
    progress: bool = True,
    co_labels: dict[int, list[int]] | None = None,
) -> FitResult:
    """Train the unfrozen top on ``views[v, i]`` (view v of sample i); keep the best epoch.

    ``labels`` holds class indices (-1: no known label, the sample only carries negatives);
    ``negatives`` maps a sample index to class indices it must not match (analyst rejections);
    ``co_labels`` maps a sample index to the other labels its near-copies carry, used as
    ``cfg.co_labels`` says.
    """
    if cfg.co_labels not in ("keep", "mask", "drop"):
        raise ValueError(f"co_labels must be keep, mask or drop, not {cfg.co_labels!r}")
    if cfg.sampler not in ("random", "balanced"):
        raise ValueError(f"sampler must be random or balanced, not {cfg.sampler!r}")
    if cfg.sampler == "balanced" and cfg.loss == "multi_similarity":
        raise ValueError("multi_similarity draws its own P x K batches: use sampler random")
    co_labels = {} if cfg.co_labels == "keep" else co_labels or {}
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    negatives = negatives or {}
    # Channels-last weights take oneDNN's fast path for the depthwise convolutions: a step
    # of the photo recipe costs 1.15 s instead of 1.69 s on 2 cores (docs/benchmarks.md).
    model.to(memory_format=torch.channels_last)
    params = trainable_parameters(model, freeze_blocks)
    loss_mod = create_loss(cfg.loss, model.dim, n_classes)
    groups = [{"params": params, "lr": cfg.lr}]
    if model.head is not None:
        head_ids = {id(p) for p in model.head.parameters()}
        groups = [
            {"params": [p for p in params if id(p) not in head_ids], "lr": cfg.lr},
            {"params": list(model.head.parameters()), "lr": cfg.head_lr},
        ]
    if loss_mod is not None:
        groups.append({"params": list(loss_mod.parameters()), "lr": cfg.head_lr})
        _init_proxies(loss_mod, model, views, labels, train_idx, freeze_blocks, n_classes)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, math.ceil(len(train_idx) / cfg.batch_size))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (
            min(1.0, (i + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps))
        ),
    )
    model.eval()  # BatchNorm keeps its ImageNet statistics: small batches, few images
    result = FitResult()
    best_state, best = copy.deepcopy(model.state_dict()), -math.inf
    base_val = validation_top1(model, views, labels, train_idx, val_idx, freeze_blocks)
    bar = tqdm(
        range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress or None
    )
    for epoch in bar:
        losses = []
        for batch in _batches(labels, train_idx, cfg, rng):
            v = torch.from_numpy(rng.integers(0, views.shape[0], len(batch)))
            x = views[v, torch.from_numpy(batch)].float()
            emb = trainable_forward(model, x, freeze_blocks)
            loss = _loss(emb, labels[batch], batch, negatives, loss_mod, cfg, co_labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        val = validation_top1(model, views, labels, train_idx, val_idx, freeze_blocks)
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        result.history.append({"epoch": epoch, "loss": mean_loss, "val_top1": val})
        bar.set_postfix(loss=f"{mean_loss:.3f}", val_top1=f"{val:.3f}")
        log.info("epoch %d loss %.4f val_top1 %.4f", epoch, mean_loss, val)
        if math.isnan(val) or val > best:
            # Without a validation split, training runs its fixed epochs and keeps the last.
            best = val if not math.isnan(val) else best
            result.best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= cfg.patience:
            result.stopped_early = True
            break
    bar.close()
    model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(False)
    result.best_val_top1 = result.history[result.best_epoch - 1]["val_top1"]
    result.history.insert(0, {"epoch": 0, "loss": float("nan"), "val_top1": base_val})
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _loss(emb, batch_labels, batch, negatives, loss_mod, cfg: FitConfig, co_labels) -> torch.Tensor:
    lab = torch.from_numpy(batch_labels).long()
    known = lab >= 0
    if cfg.co_labels == "drop":
        known &= torch.tensor([i not in co_labels for i in batch.tolist()])
    if isinstance(loss_mod, ProxyLoss):
        exclude = None
        if cfg.co_labels == "mask":
            exclude = torch.zeros(len(batch), loss_mod.proxies.shape[0], dtype=torch.bool)
            for r, i in enumerate(batch.tolist()):
                exclude[r, co_labels.get(i, [])] = True
            exclude = exclude[known]
        loss = loss_mod(emb[known], lab[known], exclude) if known.any() else emb.sum() * 0.0
        pairs = [(r, c) for r, i in enumerate(batch.tolist()) for c in negatives.get(i, [])]
        if pairs and cfg.hard_negative_weight > 0:
            cos = loss_mod.cosines(emb)
            loss = loss + cfg.hard_negative_weight * hard_negative_hinge(cos, torch.tensor(pairs))
        return loss
    return multi_similarity(emb[known], lab[known])


def _init_proxies(loss_mod, model, views, labels, train_idx, freeze_blocks, n_classes) -> None:
    """Start each proxy at its class's mean clean embedding (faster, steadier convergence)."""
    if not isinstance(loss_mod, ProxyLoss):
        return
    idx = [i for i in train_idx if labels[i] >= 0]
    emb = embed_cached(model, views[0, idx], freeze_blocks)
    with torch.no_grad():
        for c in range(n_classes):
            rows = emb[labels[idx] == c]
            if len(rows):
                loss_mod.proxies[c] = torch.from_numpy(rows.mean(axis=0))
