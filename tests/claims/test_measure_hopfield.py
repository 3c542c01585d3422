"""The Hopfield one-step retrieval measurement (Ramsauer et al. 2020, arXiv:2008.02217, Theorem 5)
against exact computations: the two-pattern case in closed form, separations by brute force, and
the bound being the right one (a query far from its pattern breaks it)."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.hopfield import one_step_errors, separations
from layerlab.errors import ConfigError


def test_separations_by_brute_force():
    X = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = [X[:, i] @ X[:, i] - max(X[:, i] @ X[:, j] for j in range(7) if j != i) for i in range(7)]
    assert torch.allclose(separations(X), torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.0, 8.0])
def test_two_patterns_closed_form(beta):
    """N = 2, query ξ = x_1: p_2 = 1 / (1 + exp(β Δ)), f(ξ) - x_1 = p_2 (x_2 - x_1), so the error is
    ||x_2 - x_1|| / (1 + exp(β Δ)) with Δ = |x_1|² - x_1ᵀx_2, and the bound is 2 M exp(-β Δ)."""
    x1 = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    x2 = torch.tensor([1.0, 1.5, 0.5], dtype=torch.float64)
    X = torch.stack((x1, x2), dim=1)
    delta = (x1 @ x1 - x1 @ x2).item()
    err, bound = one_step_errors(X, x1[:, None], torch.tensor([0]), beta)
    exact = (x2 - x1).norm().item() / (1 + math.exp(beta * delta))
    M = max(x1.norm().item(), x2.norm().item())
    assert abs(err.item() - exact) <= 1e-12 * max(exact, 1e-300) + 1e-15
    assert abs(bound.item() - 2 * M * math.exp(-beta * delta)) <= 1e-12 * bound.item()
    assert err.item() <= bound.item()


def test_bound_fails_where_its_premise_fails():
    """The bound is derived for ξ near x_i; from the midpoint of two patterns the one-step result
    is an average, far from x_1, and the formula with ||ξ - x_1|| in place of the distance is still a
    valid (loose) bound, while the bound computed as if ξ were x_1 itself is broken."""
    x1 = torch.tensor([3.0, 0.0], dtype=torch.float64)
    x2 = torch.tensor([0.0, 3.0], dtype=torch.float64)
    X = torch.stack((x1, x2), dim=1)
    mid = (0.5 * (x1 + x2))[:, None]
    err, bound = one_step_errors(X, mid, torch.tensor([0]), 1.0)
    assert abs(err.item() - (x2 - x1).norm().item() / 2) < 1e-12  # equal weights: f = midpoint
    assert err.item() <= bound.item()
    wrong = 2 * 3.0 * math.exp(-1.0 * separations(X)[0].item())  # premise ξ = x_1 dropped
    assert err.item() > wrong


def test_measurement_within_bound_and_retrieves():
    m = get_measure("hopfield_one_step_retrieval")
    out = m(0, dim=16, n_patterns=300, n_queries=50, norm=8.0, beta=1.0, noise=0.3)
    assert out["well_separated"] >= 1
    assert 0 <= out["ratio"] <= 1.0
    assert out["retrieved"] == 1.0
    assert out["max_rel_error"] < 1e-6
    assert m(0, dim=16, n_patterns=300, n_queries=50, norm=8.0, beta=1.0, noise=0.3) == out  # seeded


def test_bad_options_and_no_separated_pattern():
    m = get_measure("hopfield_one_step_retrieval")
    with pytest.raises(ConfigError, match="n_queries"):
        m(0, n_queries=0)
    with pytest.raises(ConfigError, match="well separated"):
        m(0, dim=4, n_patterns=500, n_queries=20, norm=1.0, beta=1.0)
