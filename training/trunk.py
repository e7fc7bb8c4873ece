"""Partial freezing: split an EmbeddingModel into a frozen stem and a trainable top.

The frozen part's outputs are computed once per augmentation pass and cached, so each
training epoch only runs the last blocks, the head convolution, GeM and the projection.
"""

from __future__ import annotations

import torch
from torch import nn

from matcher.model import EmbeddingModel
from matcher.pooling import l2_normalize


def _net(model: EmbeddingModel) -> nn.Module:
    net = getattr(model.backbone, "net", None)
    if net is None or not hasattr(net, "_blocks"):
        raise ValueError(
            f"partial freezing needs an EfficientNet-style backbone, not {model.config.backbone!r}"
        )
    return net


def blocks(model: EmbeddingModel) -> nn.ModuleList:
    """The backbone's MBConv blocks, in order (EfficientNet-style backbones only)."""
    return _net(model)._blocks


def n_blocks(model: EmbeddingModel) -> int:
    """Number of MBConv blocks in the backbone."""
    return len(blocks(model))


def frozen_forward(model: EmbeddingModel, x: torch.Tensor, freeze_blocks: int) -> torch.Tensor:
    """Stem plus the first ``freeze_blocks`` blocks: the part whose output is cached."""
    net = _net(model)
    y = net._swish(net._bn0(net._conv_stem(x)))
    for block in net._blocks[:freeze_blocks]:
        y = block(y)
    return y


def trainable_forward(
    model: EmbeddingModel, fmap: torch.Tensor, freeze_blocks: int
) -> torch.Tensor:
    """Remaining blocks, head conv, GeM, projection, L2: cached feature map -> embedding."""
    net = _net(model)
    y = fmap
    for block in net._blocks[freeze_blocks:]:
        y = block(y)
    y = net._swish(net._bn1(net._conv_head(y)))
    v = model.pool(y)
    if model.head is not None:
        v = model.head(v)
    return l2_normalize(v)


def trainable_parameters(model: EmbeddingModel, freeze_blocks: int) -> list[nn.Parameter]:
    """Parameters after the frozen blocks; the others get ``requires_grad=False``."""
    net = _net(model)
    for p in model.parameters():
        p.requires_grad_(False)
    modules: list[nn.Module] = [*net._blocks[freeze_blocks:], net._conv_head, net._bn1]
    if model.head is not None:
        modules.append(model.head)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params
