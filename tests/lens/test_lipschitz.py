"""Local Lipschitz bounds by interval bound propagation (lens.lipschitz) against exact Jacobians
and dense sampling."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import lipschitz


def mlp(sizes: list[int], seed: int, bias_std: float = 0.3) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(n, m, generator=g, dtype=torch.float64) * (2 / m) ** 0.5 for m, n in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(n, generator=g, dtype=torch.float64) * bias_std for n in sizes[1:]]
    return ws, bs


def test_exact_for_a_linear_map_and_where_no_unit_switches():
    ws, bs = mlp([5, 3], seed=0)
    x0 = torch.randn(5, dtype=torch.float64)
    assert lipschitz.local_lipschitz_bound(ws, bs, x0, 0.7) == pytest.approx(float(ws[0].abs().sum(1).max()), rel=1e-14)
    # a ReLU net on a ball small enough that no pre-activation changes sign: the bound is ||J(x0)||
    ws, bs = mlp([4, 16, 16, 3], seed=1)
    x0 = torch.randn(4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = float(lipschitz.jacobian_norm(ws, bs, x0[None])[0])
    assert lipschitz.local_lipschitz_bound(ws, bs, x0, 1e-6) == pytest.approx(exact, rel=1e-12)
    # the same Jacobian by autograd (row-wise l1, max over rows)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        for lin, W, b in zip(net[::2], ws, bs):
            lin.weight.copy_(W)
            lin.bias.copy_(b)
    J = torch.autograd.functional.jacobian(net, x0)
    assert float(J.abs().sum(1).max()) == pytest.approx(exact, rel=1e-12)
    assert lipschitz.model_bound(net, x0, 1e-6) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5, 2.0])
def test_bound_is_above_dense_sampling_and_below_the_global_product(eps):
    ws, bs = mlp([2, 16, 16, 1], seed=3)
    x0 = torch.tensor([0.2, -0.4], dtype=torch.float64)
    bound = lipschitz.local_lipschitz_bound(ws, bs, x0, eps)
    # in 2-D a 301 x 301 grid of the box meets every region larger than the spacing
    u = torch.linspace(-1, 1, 301, dtype=torch.float64)
    grid = x0 + eps * torch.cartesian_prod(u, u)
    dense = float(lipschitz.jacobian_norm(ws, bs, grid).max())
    assert dense <= bound * (1 + 1e-12)
    assert lipschitz.sampled_lower_bound(ws, bs, x0, eps, n_samples=2000) <= dense + 1e-12
    assert bound <= lipschitz.global_bound(ws) * (1 + 1e-12)


def test_clarke_interval_at_a_kink_covers_both_sides():
    # f(x) = relu(x): at x0 = 0 with eps = 0 the Clarke Jacobian is [0, 1]: the bound is 1
    ws = [torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)]
    bs = [torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
    assert lipschitz.local_lipschitz_bound(ws, bs, torch.zeros(1), 0.0) == 1.0
    assert lipschitz.local_lipschitz_bound(ws, bs, torch.tensor([-1.0]), 0.5) == 0.0


def test_errors():
    ws, bs = mlp([3, 4, 1], seed=0)
    with pytest.raises(ShapeError, match="features"):
        lipschitz.local_lipschitz_bound(ws, bs, torch.zeros(5), 0.1)
    with pytest.raises(ConfigError, match="eps"):
        lipschitz.local_lipschitz_bound(ws, bs, torch.zeros(3), -1.0)
    with pytest.raises(ConfigError, match="one bias"):
        lipschitz.local_lipschitz_bound(ws, bs[:1], torch.zeros(3), 0.1)
