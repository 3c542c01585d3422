"""Zhang, Frei & Bartlett (2023, arXiv:2306.09927): the LSA global minimum Gamma* and its risk, against
Monte Carlo, autograd and the LSA forward pass."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures.icl_linear_regression import _predict
from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory.icl_linear_regression import (global_minimum, global_minimum_risk, lsa_predict, lsa_risk,
                                                        paper_init, prompt_embedding)

F64 = torch.float64


def draw(n, m, lam, g):
    d = lam.shape[0]
    chol = torch.linalg.cholesky(lam)
    w = torch.randn(n, d, generator=g, dtype=F64)
    x = torch.randn(n, m, d, generator=g, dtype=F64) @ chol.T
    xq = torch.randn(n, d, generator=g, dtype=F64) @ chol.T
    return w, x, (x @ w[:, :, None]).squeeze(-1), xq


def test_risk_matches_monte_carlo_for_any_gamma():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=F64)
    lam = a @ a.T + 0.5 * torch.eye(3, dtype=F64)
    gamma = torch.randn(3, 3, generator=g, dtype=F64) * 0.3  # not symmetric
    m = 6
    w, x, y, xq = draw(100_000, m, lam, g)
    h = (y[:, :, None] * x).mean(1)
    err = ((xq @ gamma * h).sum(-1) - (xq * w).sum(-1)).square()
    se = err.std() / len(err) ** 0.5
    assert abs(err.mean() - lsa_risk(gamma, lam, m)) < 4 * se


def test_global_minimum_is_the_minimizer_and_its_risk():
    lam = torch.diag(torch.tensor([2.0, 1.0, 0.5, 0.25], dtype=F64))
    n = 7
    gs = global_minimum(lam, n)
    g = gs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lsa_risk(g, lam, n), g)
    assert grad.abs().max() < 1e-12
    r = global_minimum_risk(lam, n)
    assert r == pytest.approx(float(torch.trace(lam) - torch.trace(gs @ lam @ lam)), rel=1e-12)
    for s in range(5):  # the risk is convex in Gamma: every perturbation costs
        d = torch.randn(4, 4, generator=torch.Generator().manual_seed(s), dtype=F64) * 1e-2
        assert lsa_risk(gs + d, lam, n) > r
    eye = torch.ones(5, dtype=F64)  # identity covariance: R* = d(d+1)/(N+d+1)
    assert global_minimum_risk(eye, 20).item() == pytest.approx(5 * 6 / 26, rel=1e-13)
    # longer test prompts lower the risk of the same Gamma*
    assert global_minimum_risk(lam, n, 100) < r


def test_lsa_forward_at_the_global_minimum_is_the_linear_predictor():
    g = torch.Generator().manual_seed(2)
    lam = torch.diag(torch.tensor([1.5, 1.0, 0.5], dtype=F64))
    n, c = 9, 0.7
    gs = global_minimum(lam, n)
    w_pv = torch.zeros(4, 4, dtype=F64)
    w_pv[3, 3] = c
    w_kq = torch.zeros(4, 4, dtype=F64)
    w_kq[:3, :3] = gs / c
    w, x, y, xq = draw(64, n, lam, g)
    e = prompt_embedding(x, y, xq)
    h = (y[:, :, None] * x).mean(1)
    assert torch.allclose(lsa_predict(e, w_pv, w_kq), (xq @ gs.T * h).sum(-1), rtol=1e-12, atol=1e-12)
    # the measure's fast form of the same prediction, for arbitrary parameters
    a, b = (torch.randn(4, 4, generator=g, dtype=F64) for _ in range(2))
    assert torch.allclose(_predict(e.transpose(1, 2), a, b), lsa_predict(e, a, b), rtol=1e-10, atol=1e-12)


def test_paper_init_and_errors():
    w_pv, w_kq = paper_init(4, 0.3, torch.Generator().manual_seed(0))
    assert w_pv[-1, -1] == 0.3 and w_pv.abs().sum() == 0.3
    assert torch.linalg.matrix_norm(w_kq[:4, :4]).item() == pytest.approx(0.3, rel=1e-12)
    assert w_kq[4].abs().sum() == 0 and w_kq[:, 4].abs().sum() == 0
    with pytest.raises(ConfigError, match="positive definite"):
        global_minimum(torch.tensor([1.0, -1.0]), 3)
    with pytest.raises(ConfigError, match="integer >= 1"):
        global_minimum(torch.ones(2), 0)
    with pytest.raises(ShapeError, match="d x d"):
        lsa_risk(torch.eye(3, dtype=F64), torch.ones(2), 4)
