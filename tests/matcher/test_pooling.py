import pytest
import torch

from matcher.pooling import GeM, gem, l2_normalize


def test_gem_p1_is_average_pooling():
    x = torch.rand(2, 5, 4, 3) + 0.1
    assert torch.allclose(gem(x, 1.0), x.mean(dim=(-2, -1)), atol=1e-6)


def test_gem_large_p_approaches_max():
    x = torch.rand(2, 5, 4, 3) + 0.1
    assert torch.allclose(gem(x, 200.0), x.amax(dim=(-2, -1)), rtol=0.05)


def test_gem_between_mean_and_max():
    x = torch.rand(3, 7, 5, 5) + 0.01
    g = gem(x, 3.0)
    assert torch.all(g >= x.mean(dim=(-2, -1)) - 1e-6)
    assert torch.all(g <= x.amax(dim=(-2, -1)) + 1e-6)


def test_gem_rejects_wrong_rank():
    with pytest.raises(ValueError, match="n, c, h, w"):
        gem(torch.rand(3, 4))


def test_learnable_gem_has_gradient():
    pool = GeM(3.0, learnable=True)
    x = torch.rand(2, 4, 3, 3, requires_grad=True)
    pool(x).sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad)


def test_l2_normalize_unit_rows_and_zero_rows():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = l2_normalize(x)
    assert torch.allclose(y[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(y[1], torch.zeros(2))
