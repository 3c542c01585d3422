"""The deep linear network: shapes, product, and the three initializations' defining properties."""
import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models.deep_linear import DeepLinear, balanced_factors, semi_orthogonal


def net(**kw):
    kw = {"in_features": 6, "out_features": 3, "width": 8, "depth": 3, "init": "orthogonal",
          "generator": torch.Generator().manual_seed(0)} | kw
    return DeepLinear(**kw)


@pytest.mark.parametrize("init", ["small", "orthogonal", "balanced"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_shapes_and_product_equals_forward(depth, init):
    m = net(depth=depth, init=init, init_scale=0.5, dtype=torch.float64)
    shapes = [tuple(w.shape) for w in m.weights]
    assert len(shapes) == depth and shapes[0][1] == 6 and shapes[-1][0] == 3
    if depth == 1:
        assert shapes == [(3, 6)]
    else:
        assert all(s == (8, 8) for s in shapes[1:-1]) and shapes[0] == (8, 6) and shapes[-1] == (3, 8)
    x = torch.randn(5, 6, dtype=torch.float64)
    assert m(x).shape == (5, 3) and m(x[0]).shape == (3,) and m.product().shape == (3, 6)
    torch.testing.assert_close(m(x), x @ m.product().T, rtol=1e-12, atol=1e-14)
    assert list(m.buffers()) == [] and all(w.dtype == torch.float64 for w in m.weights)


@pytest.mark.parametrize("shape", [(8, 8), (8, 5), (3, 8), (1, 4)], ids=str)
def test_semi_orthogonal(shape):
    q = semi_orthogonal(*shape, generator=torch.Generator().manual_seed(1))
    rows, cols = shape
    gram = q.T @ q if rows >= cols else q @ q.T
    torch.testing.assert_close(gram, torch.eye(min(shape), dtype=torch.float64), atol=1e-12, rtol=0)


def test_orthogonal_init():
    m = net(init="orthogonal", in_features=10, out_features=4, width=8, depth=4)
    W1, W2, W3, W4 = m.weights  # (8, 10) wide, (8, 8), (8, 8), (4, 8) wide
    for W in (W2, W3):
        torch.testing.assert_close(W.T @ W, torch.eye(8), atol=1e-5, rtol=0)
    for W in (W1, W4):
        torch.testing.assert_close(W @ W.T, torch.eye(W.shape[0]), atol=1e-5, rtol=0)
    m = net(init="orthogonal", in_features=3, out_features=8, width=5, depth=2)  # (5, 3), (8, 5): tall
    for W in m.weights:
        torch.testing.assert_close(W.T @ W, torch.eye(W.shape[1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("dims", [(6, 3, 8), (3, 6, 8), (5, 5, 5)], ids=str)
def test_balanced_factors_reproduce_target_and_are_balanced(dims, depth):
    in_f, out_f, width = dims
    target = torch.randn(out_f, in_f, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    Ws = balanced_factors(target, depth, width, generator=torch.Generator().manual_seed(3))
    assert len(Ws) == depth
    product = Ws[0]
    for W in Ws[1:]:
        product = W @ product
    torch.testing.assert_close(product, target, rtol=0, atol=1e-12)
    for lower, upper in zip(Ws[:-1], Ws[1:]):
        torch.testing.assert_close(upper.T @ upper, lower @ lower.T, rtol=0, atol=1e-12)
    if depth > 1:  # every factor carries S^(1/L): equal spectra across layers
        s = torch.linalg.svdvals(target)
        for W in Ws:
            torch.testing.assert_close(torch.linalg.svdvals(W)[: len(s)], s ** (1 / depth))


def test_balanced_init_condition_and_scale():
    m = net(init="balanced", init_scale=1e-3, depth=4)  # float32 parameters
    Ws = list(m.weights)
    for lower, upper in zip(Ws[:-1], Ws[1:]):
        assert (upper.T @ upper - lower @ lower.T).abs().max().item() <= 1e-6
    # the end-to-end map has entries of std init_scale (18 samples: loose)
    assert 0.3e-3 < m.product().std().item() < 3e-3
    # balanced, but not trivially: the imbalance of a "small" init is far larger
    small = list(net(init="small", init_scale=0.5, depth=4).weights)
    assert (small[1].T @ small[1] - small[0] @ small[0].T).abs().max().item() > 0.1


def test_small_init_statistics():
    sigma = 0.05
    m = net(init="small", init_scale=sigma, in_features=64, out_features=32, width=128, depth=3)
    for W in m.weights:
        n = W.numel()
        assert abs(W.std().item() / sigma - 1) < 5 / math.sqrt(2 * n)  # 5 standard errors
        assert abs(W.mean().item()) < 5 * sigma / math.sqrt(n)


def test_generator_makes_init_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = net(init="balanced", generator=torch.Generator().manual_seed(7))
    b = net(init="balanced", generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))
    c = net(init="balanced", generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a.weights[0], c.weights[0])


def test_errors():
    with pytest.raises(ConfigError, match="width >= min"):
        net(init="balanced", in_features=6, out_features=5, width=4)
    assert net(init="balanced", in_features=6, out_features=5, width=4, depth=1).product().shape == (5, 6)
    with pytest.raises(ConfigError, match="did you mean 'balanced'"):
        net(init="balance")
    with pytest.raises(ConfigError):
        net(depth=0)
    with pytest.raises(ConfigError):
        net(init="small", init_scale=0.0)
    with pytest.raises(ShapeError, match="in_features = 6"):
        net()(torch.randn(2, 5))
