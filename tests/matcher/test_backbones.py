"""Contract tests for every registered backbone and the embedding model around it."""

import pytest
import torch

from matcher import create_backbone, list_backbones
from matcher.model import EmbeddingModel, ModelConfig


def test_registry_lists_bundled_backbones():
    assert {"efficientnet_lite0", "efficientnet_lite2"} <= set(list_backbones())


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError) as err:
        create_backbone("resnet9000")
    assert "efficientnet_lite0" in str(err.value) and "resnet9000" in str(err.value)


@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("head_dim", [None, 64])
def test_embedding_contract(name, head_dim):
    torch.manual_seed(0)
    model = EmbeddingModel(ModelConfig(backbone=name, head_dim=head_dim), pretrained_backbone=False)
    model.train()
    x = torch.randn(2, 3, 96, 96)
    out = model(x)
    assert out.shape == (2, head_dim or model.backbone.spec.feature_dim)
    assert out.shape[1] == model.dim
    assert torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    # A loss that depends on every output dimension must reach every trainable parameter.
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    # The ImageNet classifier is not part of the embedding path.
    missing = [n for n in missing if "._fc." not in n]
    assert not missing, f"no gradient reached: {missing[:5]}"


@pytest.mark.parametrize("name", list_backbones())
def test_bundled_weights_load_from_wheel(name):
    bb = create_backbone(name, pretrained=True)
    assert bb.spec.weights_file is not None and bb.spec.weights_file.is_file()
    assert "site-packages" in str(bb.spec.weights_file)
