"""WDiscOOD's whitened LDA, scores and AUROC (lens.wdiscood) against exact LDA and direct formulas."""
from __future__ import annotations

import pytest
import scipy.linalg
import torch
from sklearn.metrics import roc_auc_score

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import wdiscood

F64 = torch.float64


def _exact_gaussians(k: int = 4, d: int = 7, n_per: int = 40, seed: int = 0):
    """Classes whose sample means are exactly ``mu_k`` and sample covariances exactly ``sigma``."""
    g = torch.Generator().manual_seed(seed)
    mu = 3.0 * torch.randn(k, d, generator=g, dtype=F64)
    a = torch.randn(d, d, generator=g, dtype=F64)
    sigma = a @ a.T / d + 0.2 * torch.eye(d, dtype=F64)
    root = torch.linalg.cholesky(sigma)
    rows = []
    for c in range(k):
        z = torch.randn(n_per, d, generator=g, dtype=F64)
        z = z - z.mean(0)
        z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / n_per)).T  # sample covariance I
        rows.append(mu[c] + z @ root.T)
    return torch.cat(rows), torch.arange(k).repeat_interleave(n_per), mu, sigma


def _projector(basis: torch.Tensor) -> torch.Tensor:
    """Orthogonal projector onto the column span (numerical rank by SVD)."""
    u, s, _ = torch.linalg.svd(basis, full_matrices=False)
    u = u[:, s > 1e-10 * s.max()]
    return u @ u.T


def test_discriminative_subspace_is_classical_lda():
    h, y, mu, sigma = _exact_gaussians()
    model = wdiscood.fit_wlda(h, y, alpha=0.0)
    assert model.n_discriminants == 3  # K - 1
    # population form: span of Σ^{-1}(μ_k - μ̄) in raw coordinates = Σ_W^{-1/2} W_D
    raw = torch.linalg.solve(sigma, (mu - mu.mean(0)).T)
    back = model.whiten @ model.discriminants
    assert torch.linalg.matrix_norm(_projector(back) - _projector(raw)) < 1e-10
    # the generalized eigenproblem S_B v = λ S_W v gives the same ratios and subspace
    s_w = sigma.numpy()
    centred = (mu - h.mean(0)).numpy()
    s_b = centred.T @ centred / 4
    evals, evecs = scipy.linalg.eigh(s_b, s_w)
    evals, evecs = evals[::-1], evecs[:, ::-1].copy()
    assert torch.allclose(model.ratios[:3], torch.from_numpy(evals[:3].copy()), rtol=1e-10, atol=0)
    assert torch.linalg.matrix_norm(_projector(back) - _projector(torch.from_numpy(evecs[:, :3]))) < 1e-10
    # alpha only rescales the ratios
    assert torch.allclose(wdiscood.fit_wlda(h, y, alpha=0.5).ratios, model.ratios / 1.5, rtol=1e-12)


def test_scores_equal_their_formulas_and_are_invariant_under_affine_maps():
    h, y, _, sigma = _exact_gaussians(seed=1)
    g = torch.Generator().manual_seed(2)
    x = 2.0 * torch.randn(50, 7, generator=g, dtype=F64)
    model = wdiscood.fit_wlda(h, y, n_discriminants=2)
    inv_root = torch.linalg.inv(torch.linalg.cholesky(sigma))  # any whitening gives the same distances
    xw, cw, gw = x @ inv_root.T, model.means @ inv_root.T, h.mean(0) @ inv_root.T
    centred = cw - gw
    evals, evecs = torch.linalg.eigh(centred.T @ centred / 4)
    wd = evecs[:, -2:]
    want = -(torch.cdist(xw @ wd, cw @ wd).amin(1) + 3.0 * ((xw - gw) - (xw - gw) @ wd @ wd.T).norm(dim=1))
    assert torch.allclose(wdiscood.wdiscood_score(model, x, beta=3.0), want, rtol=1e-10, atol=1e-12)
    maha = torch.stack([((x - m) @ torch.linalg.inv(sigma) * (x - m)).sum(1) for m in model.means], 1).amin(1)
    assert torch.allclose(wdiscood.mahalanobis_score(model, x), -maha, rtol=1e-10)
    a = torch.randn(7, 7, generator=g, dtype=F64) + torch.eye(7, dtype=F64)
    b = torch.randn(7, generator=g, dtype=F64)
    moved = wdiscood.fit_wlda(h @ a.T + b, y, n_discriminants=2)
    for score in (lambda m, v: wdiscood.wdiscood_score(m, v, beta=3.0), wdiscood.mahalanobis_score):
        assert torch.allclose(score(moved, x @ a.T + b), score(model, x), rtol=1e-9, atol=1e-9)


def test_auroc_is_the_mann_whitney_statistic_and_fpr95():
    g = torch.Generator().manual_seed(3)
    s_in = torch.randint(0, 6, (40,), generator=g).double()  # many ties
    s_out = torch.randint(0, 5, (30,), generator=g).double()
    labels = [1] * 40 + [0] * 30
    assert wdiscood.auroc(s_in, s_out) == pytest.approx(roc_auc_score(labels, torch.cat([s_in, s_out]).numpy()), abs=1e-12)
    assert wdiscood.auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    s_in = torch.arange(100, dtype=F64)  # threshold at the 5% quantile of ID = 4.95
    assert wdiscood.fpr_at_tpr(s_in, torch.tensor([0.0, 4.0, 5.0, 50.0])) == 0.5


def test_msp_and_errors():
    z = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(wdiscood.msp_score(z), torch.tensor([0.5, 1 / (1 + torch.exp(torch.tensor(-10.0)).item())], dtype=F64))
    h, y, _, _ = _exact_gaussians()
    with pytest.raises(ConfigError, match="two ID classes"):
        wdiscood.fit_wlda(h, torch.zeros_like(y))
    with pytest.raises(ConfigError, match="n_discriminants"):
        wdiscood.fit_wlda(h, y, n_discriminants=0)
    with pytest.raises(ShapeError, match="labels"):
        wdiscood.fit_wlda(h, y[:-1])
