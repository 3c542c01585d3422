"""Linear regions along a segment (lens.regions) against the closed form of one hidden layer,
the layer-by-layer reference, and brute-force dense sampling."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import regions


def mlp(sizes: list[int], seed: int, bias_std: float = 0.5) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(m, n, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, m, generator=g, dtype=torch.float64) * (2 / m) ** 0.5)
            lin.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * bias_std)
        layers += [lin] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def sampled_patterns(net: nn.Sequential, a: torch.Tensor, b: torch.Tensor, n: int) -> int:
    """Brute force: pattern changes between consecutive points of a dense grid, + 1."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    h, bits = a + t * (b - a), []
    for m in net:
        h = m(h)
        if isinstance(m, nn.Linear) and m is not net[-1]:
            bits.append(h > 0)
    pat = torch.cat(bits, 1)
    return 1 + int((pat[1:] != pat[:-1]).any(dim=1).sum())


def test_one_hidden_layer_regions_are_breakpoints_plus_one():
    net = mlp([3, 20, 2], seed=0)
    a = torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    b = -a  # through the origin, near which the hyperplanes pass
    W, c = net[0].weight.detach(), net[0].bias.detach()
    # closed form: unit i switches at t_i = -(w_i . a + c_i) / (w_i . (b - a)), counted when in (0, 1)
    t = -(W @ a + c) / (W @ (b - a))
    expected = sorted(float(x) for x in t if 0 < x < 1)
    ref = regions.mlp_line_regions(*regions.mlp_weights(net), a, b)
    walk = regions.line_regions(net, a[None], b[None])[0]
    assert ref.n_regions == walk.n_regions == len(expected) + 1
    assert torch.allclose(ref.breakpoints, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(walk.breakpoints, ref.breakpoints, rtol=0, atol=1e-8)
    assert sampled_patterns(net, a, b, 200_001) == len(expected) + 1
    assert len(expected) >= 5  # the case is not trivial


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_walk_equals_layerwise_reference_and_dense_sampling(seed):
    net = mlp([2, 12, 12, 12, 3], seed=seed)
    g = torch.Generator().manual_seed(10 + seed)
    a = torch.randn(2, generator=g, dtype=torch.float64) * 3
    b = -a
    ref = regions.mlp_line_regions(*regions.mlp_weights(net), a, b)
    walk = regions.line_regions(net, a[None], b[None])[0]
    sequential = regions.line_regions(net, a[None], b[None], grid=1)[0]  # the plain walk, region by region
    assert walk.n_regions == ref.n_regions == sequential.n_regions > 8
    assert torch.allclose(sequential.breakpoints, ref.breakpoints, rtol=0, atol=1e-8)
    assert torch.allclose(walk.breakpoints, ref.breakpoints, rtol=0, atol=1e-8)
    assert torch.allclose(walk.slopes, ref.slopes, rtol=1e-9, atol=1e-9)
    # dense sampling can only miss regions narrower than its grid: equal here at 4e5 points
    gaps = ref.breakpoints.diff().min() if ref.breakpoints.numel() > 1 else torch.tensor(1.0)
    if float(gaps) > 1e-5:
        assert sampled_patterns(net, a, b, 400_001) == ref.n_regions
    # the slopes are the finite differences of f inside each region (1e-7: float64 differences)
    edges = torch.cat([torch.zeros(1, dtype=torch.float64), ref.breakpoints, torch.ones(1, dtype=torch.float64)])
    mids, w = 0.5 * (edges[1:] + edges[:-1]), 0.25 * (edges[1:] - edges[:-1])
    with torch.no_grad():
        f = lambda s: net(a + s[:, None] * (b - a))  # noqa: E731
        fd = (f(mids + w) - f(mids - w)) / (2 * w[:, None])
    assert torch.allclose(fd, ref.slopes, rtol=1e-6, atol=1e-7)


def test_batched_walk_and_masked_unit_merges_pieces():
    net = mlp([2, 6, 6, 1], seed=3)
    g = torch.Generator().manual_seed(4)
    starts, ends = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    batched = regions.line_regions(net, starts, ends)
    for i in range(5):
        one = regions.mlp_line_regions(*regions.mlp_weights(net), starts[i], ends[i])
        assert batched[i].n_regions == one.n_regions
        assert batched[i].n_pieces() == one.n_pieces() <= one.n_regions
    # a hidden unit of the last layer with zero output weight switches without bending f
    with torch.no_grad():
        net[4].weight[0, 0] = 0.0
    a, b = torch.tensor([-3.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 0.5], dtype=torch.float64)
    r = regions.mlp_line_regions(*regions.mlp_weights(net), a, b)
    W3, c3 = net[2].weight.detach(), net[2].bias.detach()
    h = lambda t: torch.relu(net[0](a + t * (b - a)))  # noqa: E731
    with torch.no_grad():
        switches = sum(1 for t in r.breakpoints if abs(float((W3 @ h(t) + c3)[0])) < 1e-9)
    assert switches >= 1 and r.n_pieces() == r.n_regions - switches


def test_errors():
    net = mlp([2, 4, 1], seed=0)
    with pytest.raises(ShapeError, match="same shape"):
        regions.line_regions(net, torch.zeros(2, 2), torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="Sequential"):
        regions.mlp_weights(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)))
    with pytest.raises(ConfigError, match="no activation unit"):
        regions.line_regions(nn.Linear(2, 1), torch.zeros(1, 2), torch.ones(1, 2))
