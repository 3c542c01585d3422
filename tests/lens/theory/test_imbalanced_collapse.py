"""The imbalanced bias-free UFM with MSE loss (Dang et al. 2023, arXiv:2301.00437): the closed-form
minimizer is a stationary point with the stated objective, and no random point does better."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.lens.theory.imbalanced_collapse import ufm_mse_minimum

F64 = torch.float64


def objective(w, h, y, lw, lh):
    n = y.shape[1]
    return 0.5 * (w @ h - y).square().sum() / n + 0.5 * lw * w.square().sum() + 0.5 * lh * h.square().sum() / n


def build(counts, lw, lh, d=6, seed=0):
    th = ufm_mse_minimum(counts, lw, lh)
    k = len(counts)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=F64))
    w = (th["classifier_norm"][:, None] * q.T).clone()  # orthogonal rows along q_k
    means = th["feature_norm"][:, None] * q.T
    labels = torch.repeat_interleave(torch.arange(k), torch.tensor(counts))
    h = means[labels].T.clone()
    y = torch.nn.functional.one_hot(labels, k).double().T
    return th, w, h, y


@pytest.mark.parametrize("counts,lam", [((24, 12, 6, 3), 1e-2), ((5, 5, 5), 3e-2), ((30, 2, 1), 5e-2)])
def test_closed_form_is_stationary_and_attains_f_star(counts, lam):
    th, w, h, y = build(counts, lam, lam)
    w.requires_grad_(True)
    h.requires_grad_(True)
    f = objective(w, h, y, lam, lam)
    assert f.item() == pytest.approx(th["objective"].item(), rel=1e-12)
    gw, gh = torch.autograd.grad(f, (w, h))
    assert gw.abs().max() < 1e-12 and gh.abs().max() < 1e-12
    assert torch.allclose(th["logit"], (w * (h[:, torch.cumsum(torch.tensor((0,) + counts[:-1]), 0)].T)).sum(1),
                          atol=1e-12)
    # random points (and small perturbations of the minimizer) are never lower
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        dw = 1e-3 * torch.randn(w.shape, generator=g, dtype=F64)
        dh = 1e-3 * torch.randn(h.shape, generator=g, dtype=F64)
        assert objective(w.detach() + dw, h.detach() + dh, y, lam, lam) >= f.item() - 1e-15


def test_lengths_follow_class_sizes_and_minority_collapse():
    th = ufm_mse_minimum([24, 12, 6, 3], 1e-2, 1e-2)
    assert bool((th["classifier_norm"].diff() < 0).all())  # bigger classes: longer classifier rows
    assert bool((th["logit"].diff() < 0).all())
    balanced = ufm_mse_minimum([5, 5, 5], 1e-2, 1e-2)
    assert torch.allclose(balanced["feature_norm"], balanced["feature_norm"][0].expand(3), rtol=1e-14)
    gone = ufm_mse_minimum([100, 1], 0.2, 0.2)  # sqrt(1) < sqrt(101 * 0.04): the minority class vanishes
    assert gone["logit"][1] == 0 and gone["feature_norm"][1] == 0 and gone["logit"][0] > 0
    with pytest.raises(ConfigError, match="counts"):
        ufm_mse_minimum([3, 0], 1e-2, 1e-2)
