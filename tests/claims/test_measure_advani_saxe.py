"""The linear-student learning-curve measurement (Advani & Saxe 2017, arXiv:1710.03667)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.advani_saxe import student_curves
from layerlab.errors import ConfigError


def test_student_curves_match_the_spectral_solution_of_the_instance():
    g = torch.Generator().manual_seed(0)
    p, n, eta, noise = 30, 50, 0.2, 0.3
    x = torch.randn(p, n, generator=g, dtype=torch.float64) / n ** 0.5
    wbar = torch.randn(n, generator=g, dtype=torch.float64)
    y = x @ wbar + noise ** 0.5 * torch.randn(p, generator=g, dtype=torch.float64)
    times = [0, 1, 7, 40]
    eg, et = student_curves(x, y, wbar, noise, eta, times)
    # from w = 0: w_t = V diag((1 - (1 - eta lam)^t) / lam) V^T X^T y on the nonzero eigenvalues of X^T X
    lam, v = torch.linalg.eigh(x.T @ x)
    keep = lam > 1e-10
    lam, v = lam[keep], v[:, keep]
    for i, t in enumerate(times):
        w = v @ (((1 - (1 - eta * lam) ** t) / lam) * (v.T @ (x.T @ y)))
        assert float(eg[i]) == pytest.approx(float((w - wbar).square().sum() / n + noise), rel=1e-10)
        assert float(et[i]) == pytest.approx(float((y - x @ w).square().mean()), rel=1e-10, abs=1e-14)


def test_curves_approach_the_closed_form_at_large_n():
    m = get_measure("linear_student_curves")
    out = m(0, dim=1500, alphas=[2.0], steps=60, points=4)
    assert out["error"] < 0.1
    assert out["final_gen@2"] == pytest.approx(out["final_gen_theory@2"], rel=0.1)


def test_a_diverging_step_is_a_config_error():
    with pytest.raises(ConfigError, match="diverges"):
        get_measure("linear_student_curves")(0, alphas=[4.0], eta=0.5)
