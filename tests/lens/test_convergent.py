"""Sparse prediction and spectral groups of units (Li et al. 2016) against closed forms."""
import itertools

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import convergent


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_soft_threshold_closed_form():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0], dtype=torch.float64)
    assert torch.equal(convergent.soft_threshold(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64))


def test_lasso_with_an_orthonormal_design_is_soft_thresholding():
    N, p = 200, 6
    Q, _ = torch.linalg.qr(torch.randn(N, p, generator=_gen(0), dtype=torch.float64))
    A = Q * N ** 0.5  # A^T A / N = I
    B = torch.randn(N, 3, generator=_gen(1), dtype=torch.float64)
    W = convergent.lasso(A, B, 0.1)
    assert torch.allclose(W, convergent.soft_threshold(A.T @ B / N, 0.1), atol=1e-9, rtol=0)


def test_lasso_meets_its_optimality_conditions():
    N = 150
    A = torch.randn(N, 12, generator=_gen(2), dtype=torch.float64) @ torch.randn(12, 12, generator=_gen(3), dtype=torch.float64)
    B = A[:, :3] @ torch.randn(3, 4, generator=_gen(4), dtype=torch.float64) + 0.3 * torch.randn(N, 4, generator=_gen(5), dtype=torch.float64)
    lam = 0.2
    W = convergent.lasso(A, B, lam, tol=1e-13, max_iter=200_000)
    grad = A.T @ (A @ W - B) / N  # subgradient condition: grad + lam * d||W||_1 contains 0
    on = W != 0
    assert on.any() and (~on).any()
    assert float((grad[on] + lam * torch.sign(W[on])).abs().max()) < 1e-7
    assert float(grad[~on].abs().max()) <= lam + 1e-7


def test_lasso_without_penalty_is_least_squares():
    A = torch.randn(80, 5, generator=_gen(6), dtype=torch.float64)
    B = torch.randn(80, 2, generator=_gen(7), dtype=torch.float64)
    W = convergent.lasso(A, B, 0.0, tol=1e-14, max_iter=100_000)
    assert torch.allclose(W, torch.linalg.lstsq(A, B).solution, atol=1e-9, rtol=0)


def test_one_to_one_errors_match_the_best_permutation_by_brute_force():
    a = torch.randn(60, 4, generator=_gen(8), dtype=torch.float64)
    b = a[:, [2, 0, 3, 1]] + 0.8 * torch.randn(60, 4, generator=_gen(9), dtype=torch.float64)
    rho = torch.corrcoef(torch.cat([b, a], 1).T)[:4, 4:]  # (b unit, a unit)
    best = max(itertools.permutations(range(4)), key=lambda p: sum(float(rho[j, p[j]]) for j in range(4)))
    want = torch.tensor([1 - float(rho[j, best[j]]) ** 2 for j in range(4)], dtype=torch.float64)
    assert torch.allclose(convergent.one_to_one_errors(a, b), want, atol=1e-12, rtol=0)


def test_sparse_prediction_finds_units_made_of_two_units():
    a = torch.randn(2000, 8, generator=_gen(10), dtype=torch.float64)
    b = torch.stack([(a[:, 2 * j] + a[:, 2 * j + 1]) / 2 ** 0.5 for j in range(4)], dim=1)
    out = convergent.sparse_prediction(a, b, lam=0.01)
    # one unit of a explains half of each b unit's variance; the two it is made of explain all of it
    assert torch.allclose(out.one_to_one, torch.full((4,), 0.5, dtype=torch.float64), atol=0.05)
    assert out.nonzero.tolist() == [2, 2, 2, 2]
    assert float(out.mse.max()) < 1e-3 and out.error_ratio < 2e-3


def test_spectral_groups_recover_planted_factors_across_networks():
    g = _gen(11)
    z = torch.randn(500, 3, generator=g, dtype=torch.float64)

    def net() -> torch.Tensor:  # 4 noisy copies of each factor, random signs, shuffled
        cols = [s * z[:, f] + 0.3 * torch.randn(500, generator=g, dtype=torch.float64)
                for f in range(3) for s in (1, -1, 1, -1)]
        return torch.stack(cols, 1)

    labels = convergent.spectral_groups(net(), net(), 3, generator=_gen(12))
    truth = torch.tensor([f for _ in range(2) for f in range(3) for _ in range(4)])
    groups = {tuple((labels == c).nonzero().flatten().tolist()) for c in labels.unique()}
    assert groups == {tuple((truth == f).nonzero().flatten().tolist()) for f in range(3)}


def test_bad_input_names_the_problem():
    with pytest.raises(ShapeError, match=r"\(N, units\)"):
        convergent.standardize(torch.zeros(5))
    with pytest.raises(ConfigError, match="lam >= 0"):
        convergent.lasso(torch.zeros(3, 2), torch.zeros(3, 1), -1.0)
    with pytest.raises(ConfigError, match="constant"):
        convergent.sparse_prediction(torch.ones(4, 3), torch.ones(4, 2), 0.1)
    with pytest.raises(ConfigError, match="k <= 4"):
        convergent.spectral_groups(torch.randn(9, 2), torch.randn(9, 2), 5, generator=_gen(0))
