"""Metric-learning losses on unit embeddings: pure functions plus a registry.

``cosface`` and ``arcface`` learn one proxy per label (large-margin softmax on cosines);
``multi_similarity`` works on pairs inside the batch. Hard negatives from analyst feedback
(an image that does NOT match a label) add a hinge on the cosine to that label's proxy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from matcher.pooling import l2_normalize


class ProxyLoss(nn.Module):
    """Large-margin cosine softmax with one learned proxy per class (CosFace / ArcFace)."""

    def __init__(
        self, dim: int, n_classes: int, kind: str, scale: float = 30.0, margin: float = 0.2
    ) -> None:
        super().__init__()
        if kind not in ("cosface", "arcface"):
            raise ValueError(f"unknown proxy loss {kind!r}")
        self.kind = kind
        self.scale = scale
        self.margin = margin
        self.proxies = nn.Parameter(torch.randn(n_classes, dim) * 0.01)

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        """(n, classes) cosine between each embedding and each proxy."""
        return l2_normalize(emb) @ l2_normalize(self.proxies).T

    def forward(
        self, emb: torch.Tensor, labels: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        cos = self.cosines(emb)
        return margin_softmax(cos, labels, self.kind, self.scale, self.margin, exclude)


def margin_softmax(
    cos: torch.Tensor,
    labels: torch.Tensor,
    kind: str,
    scale: float,
    margin: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """CosFace (cos - m) or ArcFace (cos(theta + m)) logits for the true class, then CE.

    ``exclude``: an (n, classes) boolean mask of classes left out of a row's softmax (labels
    the same picture also carries elsewhere in the data), so the row is not pushed from them.
    """
    onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
    if kind == "cosface":
        logits = cos - margin * onehot
    else:
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + margin)
        # Past pi - m the angular margin is no longer monotone; fall back to CosFace there.
        target = torch.where(theta < math.pi - margin, target, cos - margin * math.sin(margin))
        logits = torch.where(onehot.bool(), target, cos)
    logits = scale * logits
    if exclude is not None:
        logits = logits.masked_fill(exclude & ~onehot.bool(), float("-inf"))
    return F.cross_entropy(logits, labels)


def multi_similarity(
    emb: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 40.0,
    base: float = 0.5,
    eps: float = 0.1,
) -> torch.Tensor:
    """Multi-similarity loss (Wang et al. 2019) with its hard-pair mining."""
    emb = l2_normalize(emb)
    sim = emb @ emb.T
    n = emb.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    pos_mask, neg_mask = same & ~eye, ~same
    losses = []
    for i in range(n):
        pos, neg = sim[i][pos_mask[i]], sim[i][neg_mask[i]]
        if pos.numel() == 0 or neg.numel() == 0:
            continue
        neg = neg[neg + eps > pos.min()]
        pos = pos[pos - eps < sim[i][neg_mask[i]].max()]
        if pos.numel() == 0 or neg.numel() == 0:
            continue
        lp = torch.log1p(torch.exp(-alpha * (pos - base)).sum()) / alpha
        ln = torch.log1p(torch.exp(beta * (neg - base)).sum()) / beta
        losses.append(lp + ln)
    if not losses:
        return emb.sum() * 0.0
    return torch.stack(losses).mean()


def hard_negative_hinge(
    cos: torch.Tensor, neg_labels: torch.Tensor, margin: float = 0.3
) -> torch.Tensor:
    """Mean hinge max(0, cos(x, proxy_neg) - margin) for (sample row, rejected label) pairs."""
    if neg_labels.numel() == 0:
        return cos.sum() * 0.0
    rows, cols = neg_labels[:, 0], neg_labels[:, 1]
    return F.relu(cos[rows, cols] - margin).mean()


LossFactory = Callable[[int, int], nn.Module | None]
LOSSES: dict[str, LossFactory] = {
    "cosface": lambda dim, n: ProxyLoss(dim, n, "cosface"),
    "arcface": lambda dim, n: ProxyLoss(dim, n, "arcface", margin=0.3),
    "multi_similarity": lambda dim, n: None,
}


def create_loss(name: str, dim: int, n_classes: int) -> nn.Module | None:
    """The loss module for ``name`` (None for pair losses that have no parameters)."""
    try:
        factory = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}") from None
    return factory(dim, n_classes)
