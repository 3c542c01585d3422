"""The Hessian-outlier measurement (Papyan, arXiv:1901.08244): Lanczos on the split operators against
dense Hessian and Gauss-Newton matrices computed independently."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.diagonal_estimator import exact_hessian
from layerlab.claims.measures.hessian_outliers import outlier_statistics, train_gd
from layerlab.errors import ConfigError




def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, x, y


def _dense_gauss_newton(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i from the logits' Jacobian (N, C, P)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def logits(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = theta[i:i + s.numel()].reshape(s)
            i += s.numel()
        return functional_call(model, parts, (x,))

    J = jacrev(logits)(flat)
    p = logits(flat).softmax(-1).detach()
    h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ncp,ncd,ndq->pq", J, h_out, J) / x.shape[0]


def test_statistics_equal_the_dense_computation(one_thread):
    model, x, y = _problem()
    train_gd(model, x, y, 30, 0.3)
    out = outlier_statistics(model, x, y, classes=3, lanczos_iter=63, generator=torch.Generator().manual_seed(0))
    H = exact_hessian(model, (x, y))
    G = _dense_gauss_newton(model, x)
    eh, eg, ee = (torch.linalg.eigvalsh(m).flip(0) for m in (H, G, H - G))
    rel = (eh[:3] - eg[:3]).abs() / eh[:3].abs()
    assert out["error"] == pytest.approx(float(rel.max()), rel=1e-6, abs=1e-9)
    assert out["lambda_C_over_lambda_C1"] == pytest.approx(float(eh[2] / eh[3]), rel=1e-7)
    assert out["residual_norm_over_lambda_C"] == pytest.approx(float(ee.abs().max() / eh[2]), rel=1e-6)
    assert out["split_error"] < 1e-12
    assert out["error"] > 1e-4  # a nonlinear model: the residual moves the top eigenvalues


def test_a_model_linear_in_its_parameters_has_no_residual(one_thread):
    model, x, y = _problem()
    linear = nn.Linear(5, 3).double()  # logits linear in (W, b): E = 0, H = G exactly
    out = outlier_statistics(linear, x, y, classes=3, lanczos_iter=18)
    assert out["error"] < 1e-10 and out["residual_norm_over_lambda_C"] < 1e-10
    assert out["top_space_overlap"] == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ConfigError, match="lanczos_iter"):
        outlier_statistics(linear, x, y, classes=3, lanczos_iter=3)
    with pytest.raises(ConfigError, match="width >= 1"):
        get_measure("hessian_outliers_gauss_newton")(0, width=0)
