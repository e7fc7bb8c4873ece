"""Train a threat map (``matcher.threatmap``) on generated parcels: where in a scan is a part.

Each training parcel is rendered at full size (1600 x 1250, the benchmark's), shrunk to the
map's input, and passed once through the frozen trunk; the three feature maps are cached as
float16 together with each cell's target (the fraction of it covered by the inserted part's
own pixels, ``threat_mask``). Only the small head is then trained on the cache, with binary
cross-entropy weighted towards the rare part cells. Every ``clean_every``-th parcel carries no
part, so the map also learns what ordinary bag contents look like.

The scan score is the map's highest logit; the epoch kept is the one whose held-out parcels
(their own seed range) rank parcels with a part above clean ones best (ROC AUC).
Generated data only: seeds from ``TRAIN_SEED`` (training) and ``VAL_SEED`` (held out) are
disjoint from the benchmark's and the gallery's.

    gunmatch train-threatmap --out runs/threatmap
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from matcher.threatmap import (
    ThreatMap,
    ThreatMapConfig,
    cell_targets,
    load_threatmap,
    save_threatmap,
)
from synth.shapes import THREAT_KINDS
from synth.styles import StyleSampler
from training.xray.styled import training_parcel

log = logging.getLogger(__name__)

TRAIN_SEED = 70_000_000  # training parcels; never used for evaluation
VAL_SEED = 75_000_000  # held-out parcels for choosing the epoch
PARCEL_SIZE = (1600, 1250)


@dataclass(frozen=True)
class ThreatMapTrainConfig:
    """Data and optimisation of a threat-map run."""

    map: ThreatMapConfig = field(default_factory=ThreatMapConfig)
    parcels: int = 2400
    val_parcels: int = 160
    # Every n-th parcel has no part in it.
    clean_every: int = 3
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # Part cells are rare (~1% of a scan); their loss counts this many times.
    pos_weight: float = 5.0
    # Cell target = min(1, gain x covered fraction): a cell a third covered is a part cell.
    target_gain: float = 3.0
    seed: int = 0
    threads: int | None = None
    # Rendered parcel size (width, height); the benchmark screens 1600 x 1250 scans.
    parcel_size: tuple[int, int] = PARCEL_SIZE
    # Domain randomisation: each parcel (training and held out) in a style drawn for its
    # seed, trained on its decoded export; None renders today's parcels.
    styles: StyleSampler | None = None
    # A saved threat map (a single head or an ensemble) whose heads the run starts from and
    # goes on training, all at once; its trunk, levels, width and input size replace ``map``.
    init: str | None = None


@dataclass
class Cache:
    """Frozen-trunk features of scans (float16) and their cell targets, one array per scan.

    Generated parcels share one size; a station's scans need not, so batches are formed of
    scans whose maps have the same shape.
    """

    feats: list[list[np.ndarray]]  # per level, one (c, h, w) array per scan
    targets: list[np.ndarray]  # per scan, (rows, cols) float16
    kinds: list[str]  # the part's kind, "" for a clean scan

    def __len__(self) -> int:
        return len(self.kinds)

    def batch(self, idx: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features and targets of scans ``idx`` (maps of one shape) as float32 tensors."""
        feats = [
            torch.from_numpy(np.stack([level[i] for i in idx]).astype(np.float32))
            for level in self.feats
        ]
        targets = np.stack([self.targets[i] for i in idx]).astype(np.float32)
        return feats, torch.from_numpy(targets)

    def batches(self, order: np.ndarray, size: int) -> Iterator[np.ndarray]:
        """Chunks of at most ``size`` indices, each of one map shape, taken in ``order`` and
        yielded in the order of their first member (shapes interleave through an epoch
        instead of following one another)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in order:
            groups.setdefault(self.targets[int(i)].shape, []).append(int(i))
        position = {int(i): p for p, i in enumerate(order)}
        chunks = [
            members[j : j + size]
            for members in groups.values()
            for j in range(0, len(members), size)
        ]
        for chunk in sorted(chunks, key=lambda c: position[c[0]]):
            yield np.sort(np.array(chunk))

    def n_batches(self, size: int) -> int:
        """How many batches ``batches`` yields (one shape's remainder is a batch of its own)."""
        return sum(1 for _ in self.batches(np.arange(len(self)), size))


def parcel_plan(n: int, clean_every: int, seed0: int) -> list[tuple[int, str | None]]:
    """(seed, part kind or None) of ``n`` parcels: kinds in turn, every n-th parcel clean."""
    if clean_every < 2:
        raise ValueError("clean_every must be at least 2 (some parcels must carry a part)")
    return [
        (
            seed0 + j,
            None if j % clean_every == clean_every - 1 else THREAT_KINDS[j % len(THREAT_KINDS)],
        )
        for j in range(n)
    ]


def build_cache(
    model: ThreatMap,
    plan: list[tuple[int, str | None]],
    size: tuple[int, int] = PARCEL_SIZE,
    progress: bool = True,
    desc: str = "rendering parcels",
    styles: StyleSampler | None = None,
) -> Cache:
    """Render each planned parcel, run the frozen trunk once, keep features and targets.

    With ``styles`` each parcel is rendered in its seed's style and seen as decoded.
    """

    return cache_samples(model, parcel_samples(plan, size, styles), len(plan), progress, desc)


def parcel_samples(
    plan: list[tuple[int, str | None]],
    size: tuple[int, int] = PARCEL_SIZE,
    styles: StyleSampler | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None, str]]:
    """Each planned parcel rendered as (transmission, part mask, kind or "")."""
    for seed, kind in plan:
        parcel, image = training_parcel(seed, size, kind, styles)
        yield image, parcel.threat_mask, kind or ""


def cache_samples(
    model: ThreatMap,
    samples: Iterable[tuple[np.ndarray, np.ndarray | None, str]],
    total: int | None = None,
    progress: bool = True,
    desc: str = "caching scans",
) -> Cache:
    """Run the frozen trunk once over (transmission, part mask or None, kind) samples."""
    levels: list[list[np.ndarray]] = [[] for _ in model.config.levels]
    targets, kinds = [], []
    model.eval()
    for image, mask, kind in tqdm(
        samples, total=total, desc=desc, unit="scan", disable=not progress or None
    ):
        x, _ = model.scan_tensor(image)
        with torch.inference_mode():
            feats = model.features(x)
        for store, f in zip(levels, feats, strict=True):
            store.append(f[0].numpy().astype(np.float16))
        rows, cols = feats[0].shape[-2:]
        cover = (
            cell_targets(mask, (rows, cols))
            if mask is not None
            else np.zeros((rows, cols), np.float32)
        )
        targets.append(cover.astype(np.float16))
        kinds.append(kind)
    if not kinds:
        raise ValueError("no scans to cache")
    return Cache(levels, targets, kinds)


def scan_scores(model: ThreatMap, cache: Cache, batch_size: int = 16) -> np.ndarray:
    """Each cached parcel's highest logit."""
    model.eval()
    scores = np.zeros(len(cache))
    with torch.inference_mode():
        for idx in cache.batches(np.arange(len(cache)), batch_size):
            feats, _ = cache.batch(idx)
            scores[idx] = model.head_forward(feats).flatten(1).max(1).values.numpy()
    return scores


def ranking(scores: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """ROC AUC and detection rates at the highest clean score and at 5% false alarms."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return {"auc": float("nan"), "det_max_clean": float("nan"), "det_5": float("nan")}
    return {
        "auc": float(
            np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
        ),
        "det_max_clean": float(np.mean(pos > neg.max())),
        "det_5": float(np.mean(pos > np.quantile(neg, 0.95, method="higher"))),
    }


def head_optimizer(model: ThreatMap, cfg: ThreatMapTrainConfig) -> torch.optim.Optimizer:
    """The optimizer of the head's parameters (the trunk stays frozen)."""
    params = [p for n, p in model.named_parameters() if not n.startswith("trunk.")]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def head_state(model: ThreatMap) -> dict[str, torch.Tensor]:
    """A copy of the head's weights, to put back with ``load_state_dict(strict=False)``."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("trunk.")}


def train_step(
    model: ThreatMap,
    opt: torch.optim.Optimizer,
    cache: Cache,
    idx: np.ndarray,
    cfg: ThreatMapTrainConfig,
    pos_weight: torch.Tensor,
) -> float:
    """One optimizer step of the head on cached samples ``idx`` (maps of one shape); returns
    their summed loss. ``fit_head`` trains with it and adapt's plan times it."""
    feats, cover = cache.batch(idx)
    target = torch.clamp(cover * cfg.target_gain, 0.0, 1.0)
    logits = model.head_forward(feats)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item() * len(idx)


def fit_head(
    model: ThreatMap,
    train: Cache,
    val: Cache,
    cfg: ThreatMapTrainConfig,
    progress: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
    measure: Callable[[ThreatMap, Cache], dict[str, float]] | None = None,
    select: str = "auc",
    deadline: float | None = None,
) -> list[dict]:
    """Train the head on cached features; keep the epoch with the best held-out ``select``
    of ``measure`` (by default ``ranking``: the AUC of any part against clean scans).

    With a ``deadline`` (a ``time.perf_counter()`` value) an epoch is not begun when one
    more as long as the slowest so far would end past it."""
    opt = head_optimizer(model, cfg)
    steps = cfg.epochs * train.n_batches(cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1))
    pos_weight = torch.tensor(cfg.pos_weight)
    positive = np.array([k != "" for k in val.kinds])
    measure = measure or (lambda m, cache: ranking(scan_scores(m, cache), positive))
    rng = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    best, best_state = -1.0, None
    slowest = 0.0
    for epoch in range(cfg.epochs):
        begun = time.perf_counter()
        if deadline is not None and epoch and begun + slowest > deadline:
            log.warning("out of time: stopping after %d of %d epochs", epoch, cfg.epochs)
            break
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        bar = tqdm(
            total=len(train),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="parcel",
            disable=not progress or None,
            leave=False,
        )
        for idx in train.batches(order, cfg.batch_size):
            total += train_step(model, opt, train, idx, cfg, pos_weight)
            sched.step()
            bar.update(len(idx))
        bar.close()
        row = {
            "epoch": epoch + 1,
            "loss": total / max(len(train), 1),
            **measure(model, val),
        }
        took = time.perf_counter() - begun
        row["seconds"] = round(took, 3)
        history.append(row)
        slowest = max(slowest, took)
        if on_epoch is not None:
            on_epoch(epoch, row)
        log.info("threat map epoch %s", row)
        if row[select] > best:
            best = row[select]
            best_state = head_state(model)
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    return history


def train_threatmap(cfg: ThreatMapTrainConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Render, cache, fit and save a threat map; returns its card (also saved with it)."""
    if cfg.parcels < cfg.clean_every or cfg.val_parcels < cfg.clean_every:
        raise ValueError(f"need at least {cfg.clean_every} training and held-out parcels")
    if cfg.epochs < 1:
        raise ValueError("epochs must be at least 1")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    clock = time.perf_counter()
    if cfg.init is not None:
        model = load_threatmap(cfg.init)
        cfg = replace(cfg, map=model.config)
        start = {"init_map_id": model.map_id}  # the path is in the config
    else:
        model = ThreatMap(cfg.map)
        start = {}
    model = model.to(memory_format=torch.channels_last)
    train, val = (
        build_cache(
            model,
            parcel_plan(n, cfg.clean_every, seed0),
            cfg.parcel_size,
            progress,
            desc,
            cfg.styles,
        )
        for n, seed0, desc in (
            (cfg.parcels, TRAIN_SEED, "training parcels"),
            (cfg.val_parcels, VAL_SEED, "held-out parcels"),
        )
    )
    cache_s = time.perf_counter() - clock
    clock = time.perf_counter()
    history = fit_head(model, train, val, cfg, progress)
    fit_s = time.perf_counter() - clock
    best = max(history, key=lambda r: r["auc"])
    card = {
        "kind": "xray-threatmap",
        "trainer": "training.xray.threatmap",
        "config": asdict(cfg),
        **start,
        "parcels": cfg.parcels,
        "val_parcels": cfg.val_parcels,
        "train_seed": TRAIN_SEED,
        "val_seed": VAL_SEED,
        "best_epoch": best["epoch"],
        "val": {k: best[k] for k in ("auc", "det_max_clean", "det_5")},
        "history": history,
        "cache_s": round(cache_s, 1),
        "fit_s": round(fit_s, 1),
        "total_s": round(cache_s + fit_s, 1),
    }
    model.card = card
    save_threatmap(model, out_dir, card)
    return card


__all__ = [
    "TRAIN_SEED",
    "VAL_SEED",
    "Cache",
    "ThreatMapTrainConfig",
    "build_cache",
    "cache_samples",
    "fit_head",
    "head_optimizer",
    "head_state",
    "parcel_plan",
    "parcel_samples",
    "ranking",
    "scan_scores",
    "train_step",
    "train_threatmap",
]
