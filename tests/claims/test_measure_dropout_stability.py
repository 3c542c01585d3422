"""The dropout-stability measurement (arXiv:1912.10095): the dropped network is the paper's
(1/k)-average of the kept neurons, and the path's segments are what the construction says they are
(function unchanged, or loss convex) — exact properties checked on untrained random networks."""
import pytest
import torch
import torch.nn.functional as F

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.dropout_stability import cross_entropy, dropout, dropout_path, path_losses, two_layer
from layerlab.errors import ConfigError


def _pair(n=10):
    g = torch.Generator().manual_seed(0)
    a, b = two_layer(5, n, 3, g), two_layer(5, n, 3, g)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return a, b, x, y


def test_dropout_keeps_the_mean_of_the_first_k_neurons():
    a, _, x, _ = _pair()
    k = 4
    w, bias, v = a[0].weight, a[0].bias, a[2].weight  # v holds a_i / N
    n = w.shape[0]
    expected = (F.relu(x @ w[:k].T + bias[:k]) @ (n * v[:, :k]).T) / k  # (1/k) sum_{i<=k} a_i relu(...)
    with torch.no_grad():
        assert torch.allclose(dropout(a, k)(x), expected, rtol=1e-12, atol=1e-12)
        assert not torch.allclose(dropout(a, k)(x), a(x))


def test_path_segments_are_constant_or_convex_and_end_at_b():
    a, b, x, y = _pair()
    nodes = dropout_path(a, b, 5)
    assert len(nodes) == 6
    with torch.no_grad():
        assert torch.allclose(nodes[0](x), a(x), rtol=0, atol=0)
        assert torch.allclose(nodes[-1](x), b(x), rtol=1e-12, atol=1e-12)  # b with its halves swapped
        for i in (1, 3):  # only inactive neurons' input weights move: the function is unchanged
            assert torch.allclose(nodes[i](x), nodes[i + 1](x), rtol=1e-12, atol=1e-12)
    losses = path_losses(nodes, [(x, y)], alphas=9)
    alphas = torch.linspace(0, 1, 9, dtype=torch.float64)
    for i, seg in enumerate(losses):
        chord = (1 - alphas) * seg[0] + alphas * seg[-1]
        assert float((seg - chord).max()) <= 1e-12, i  # convex (output weights only) or constant
    assert float((losses[1] - losses[1][0]).abs().max()) <= 1e-12
    with pytest.raises(ConfigError, match="half"):
        dropout_path(a, b, 4)


def test_a_tiny_run_gives_every_quantity_and_checks_options():
    m = get_measure("dropout_stability_path")
    out = m(0, widths=[4, 8], steps=5, batch_size=8, alphas=3)
    for n in (4, 8):
        # the path passes through both dropout networks, so it rises at least as far as their gap
        assert out[f"path_excess_{n}"] >= out[f"dropout_gap_{n}"] - 1e-9 - abs(out[f"loss_a_{n}"] - out[f"loss_b_{n}"])
        assert out[f"barrier_{n}"] >= 0 and out[f"barrier_aligned_{n}"] >= 0
    assert out["error"] == pytest.approx(out["path_excess_8"] - out["path_excess_4"])
    with pytest.raises(ConfigError, match="even"):
        m(0, widths=[5])
    with pytest.raises(ConfigError, match="eta"):
        m(0, eta=0.0)
