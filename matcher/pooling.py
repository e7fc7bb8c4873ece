"""Pooling and normalisation: pure functions on tensors, no weights involved."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial dims of an (n, c, h, w) map -> (n, c)."""
    if x.dim() != 4:
        raise ValueError(f"gem expects an (n, c, h, w) tensor, got shape {tuple(x.shape)}")
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row to unit L2 norm (rows of zeros stay zero)."""
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


class GeM(nn.Module):
    """GeM pooling with an optionally learnable exponent."""

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        p_tensor = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)
