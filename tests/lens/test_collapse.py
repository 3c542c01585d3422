"""Checks of layerlab.lens.collapse against closed forms on constructed simplex-ETF data and
against direct NumPy evaluations of the definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.collapse import metrics, simplex_etf

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def whitened(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    """(n, d) with column means exactly 0 and ZᵀZ/n = I_d (to rounding)."""
    z = torch.randn(n, d, generator=g, dtype=F64)
    z = z - z.mean(0)
    evals, evecs = torch.linalg.eigh(z.T @ z / n)
    return z @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def etf_data(c: int, d: int, n_per: int, rho: float, noise_cov_sqrt: torch.Tensor | None, seed: int):
    """Features g + m_c + z with class means exactly g + m_c ({m_c} a simplex ETF of norm ρ) and,
    per class, within-class sample covariance exactly Aᵀ A for A = ``noise_cov_sqrt`` (symmetric)."""
    g = gen(seed)
    m = simplex_etf(c, d, scale=rho, generator=g)
    offset = torch.randn(d, generator=g, dtype=F64)
    feats, labels = [], []
    for k in range(c):
        z = whitened(n_per, d, g) @ noise_cov_sqrt if noise_cov_sqrt is not None else 0.0
        feats.append(offset + m[k] + z * torch.ones(n_per, d, dtype=F64))
        labels.append(torch.full((n_per,), k))
    return torch.cat(feats), torch.cat(labels), m, offset


@pytest.mark.parametrize("c, d", [(3, 5), (4, 3), (5, 8), (10, 12)])
def test_simplex_etf_configuration_gives_closed_form_nc1_and_zero_nc2_nc3_nc4(c, d):
    rho, sigma = 2.0, 0.05
    h, y, m, offset = etf_data(c, d, n_per=40, rho=rho, noise_cov_sqrt=sigma * torch.eye(d, dtype=F64), seed=c)
    w = 0.7 * m  # classifier ∝ centered class means
    out = metrics(h, y, w, classifier_bias=-(w @ offset))
    # Σ_W = σ² I; Σ_B = M̃M̃ᵀ/C has C − 1 eigenvalues ρ²/(C − 1) on span(M̃), so
    # tr(Σ_W Σ_B^†)/C = σ² (C − 1)·(C − 1)/ρ² / C.
    nc1 = sigma**2 * (c - 1) ** 2 / (c * rho**2)
    assert abs(out["nc1"] - nc1) <= 1e-10 * nc1  # tolerance: 1e-10 relative
    for key in ("nc2", "nc2_classifier", "nc3_etf", "equinorm_means", "equinorm_classifier",
                "equiangular_means", "max_angle_means"):
        assert out[key] <= 1e-10, key
    assert out["nc3"] <= 1e-20  # a squared distance
    assert out["nc4"] == 0.0  # small noise: classifier and nearest centre agree on every sample


def test_without_noise_nc1_vanishes():
    h, y, m, _ = etf_data(6, 9, n_per=3, rho=1.5, noise_cov_sqrt=None, seed=1)
    out = metrics(h, y, m)
    assert out["nc1"] <= 1e-20 and out["nc2"] <= 1e-10


def test_nc1_sees_only_within_class_variance_inside_the_span_of_the_means():
    # Σ_W = σ∥² P + σ⊥² (I − P) with P the projector on span(M̃): NC1 = σ∥² (C − 1)²/(Cρ²) whatever σ⊥.
    c, d, rho = 4, 10, 3.0
    m = simplex_etf(c, d, scale=rho, generator=gen(2))
    q, _ = torch.linalg.qr(m.T)
    p = q[:, : c - 1] @ q[:, : c - 1].T
    for s_par, s_perp in [(0.0, 5.0), (0.3, 5.0), (0.3, 0.0), (1.0, 1.0)]:
        a = s_par * p + s_perp * (torch.eye(d, dtype=F64) - p)
        g = gen(3)
        h = torch.cat([m[k] + whitened(30, d, g) @ a for k in range(c)])
        y = torch.arange(c).repeat_interleave(30)
        nc1 = metrics(h, y, m)["nc1"]
        expected = s_par**2 * (c - 1) ** 2 / (c * rho**2)
        assert abs(nc1 - expected) <= 1e-10 * max(expected, 1e-2), (s_par, s_perp)


def reference(h: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> dict[str, float]:
    """The definitions evaluated directly (explicit d×d covariances, pinv, loops over classes)."""
    n = h.shape[0]
    c = w.shape[0]
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    mu_g = h.mean(0)
    sw = sum(np.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(n)) / n
    mt = mu - mu_g
    sb = sum(np.outer(mt[k], mt[k]) for k in range(c)) / c
    etf = (np.eye(c) - np.ones((c, c)) / c) / np.sqrt(c - 1)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a)

    norms = np.linalg.norm(mt, axis=1)
    cos = (mt @ mt.T) / np.outer(norms, norms)
    off = cos[~np.eye(c, dtype=bool)]
    logits = h @ w.T + (0 if b is None else b)
    ncc = np.array([np.argmin([np.linalg.norm(hi - mk) for mk in mu]) for hi in h])
    return {
        "nc1": np.trace(sw @ np.linalg.pinv(sb)) / c,
        "nc2": np.linalg.norm(unit(mt @ mt.T) - etf),
        "nc2_classifier": np.linalg.norm(unit(w @ w.T) - etf),
        "nc3": np.linalg.norm(unit(w) - unit(mt)) ** 2,
        "nc3_etf": np.linalg.norm(unit(w @ mt.T) - etf),
        "nc4": np.mean(logits.argmax(1) != ncc),
        "equinorm_means": norms.std() / norms.mean(),
        "equinorm_classifier": np.linalg.norm(w, axis=1).std() / np.linalg.norm(w, axis=1).mean(),
        "equiangular_means": off.std(),
        "max_angle_means": np.mean(np.abs(off + 1 / (c - 1))),
    }


@pytest.mark.parametrize("d, bias", [(7, True), (3, False)])  # d = 3 < C − 1: rank-deficient Σ_B
def test_metrics_match_direct_evaluation_on_random_unbalanced_data(d, bias):
    rng = np.random.default_rng(4)
    c = 5
    sizes = [3, 11, 6, 20, 9]
    centers = rng.normal(size=(c, d)) * 2
    y = np.repeat(np.arange(c), sizes)
    h = centers[y] + rng.normal(size=(len(y), d))
    w = rng.normal(size=(c, d))
    b = rng.normal(size=c) if bias else None
    out = metrics(torch.from_numpy(h), torch.from_numpy(y), torch.from_numpy(w),
                  None if b is None else torch.from_numpy(b))
    ref = reference(h, y, w, b)
    assert set(out) == set(ref)
    for key, val in ref.items():
        assert abs(out[key] - val) <= 1e-9 * max(1.0, abs(val)), key  # tolerance: 1e-9 relative
    assert 0 < out["nc4"] < 1 and out["nc1"] > 0.01  # a nontrivial configuration


@pytest.mark.parametrize("theta", [0.0, 0.3, math.pi / 2, 2.5])
def test_nc3_equals_two_minus_two_cos_of_the_angle_to_the_means(theta):
    # W = cos θ · M̃ᵀ/‖M̃‖ + sin θ · P with ‖P‖_F = 1, ⟨P, M̃ᵀ⟩_F = 0 ⇒ NC3 = ‖W − M̃ᵀ/‖M̃‖‖² = 2 − 2 cos θ.
    h, y, m, _ = etf_data(4, 6, n_per=10, rho=1.0, noise_cov_sqrt=0.1 * torch.eye(6, dtype=F64), seed=5)
    u = m / torch.linalg.matrix_norm(m)
    p = torch.randn(4, 6, generator=gen(6), dtype=F64)
    p = p - (p * u).sum() * u
    p = p / torch.linalg.matrix_norm(p)
    out = metrics(h, y, math.cos(theta) * u + math.sin(theta) * p)
    assert abs(out["nc3"] - (2 - 2 * math.cos(theta))) <= 1e-12


def test_nc4_is_one_for_an_anti_aligned_classifier():
    # Without noise each sample sits on its class mean (nearest centre = its class); W = −M̃ᵀ scores
    # its own class −ρ² and every other class +ρ²/(C − 1), so the classifier never agrees.
    h, y, m, _ = etf_data(5, 6, n_per=4, rho=1.0, noise_cov_sqrt=None, seed=7)
    h = h - h.mean(0)
    assert metrics(h, y, -m)["nc4"] == 1.0
    assert metrics(h, y, m)["nc4"] == 0.0


def test_simplex_etf_geometry_and_reproducibility():
    c, d, scale = 6, 9, 2.5
    rng_state = torch.get_rng_state()
    m = simplex_etf(c, d, scale=scale)
    assert torch.equal(torch.get_rng_state(), rng_state)  # default generator: global RNG untouched
    assert m.shape == (c, d) and m.dtype == F64
    target = scale**2 * c / (c - 1) * (torch.eye(c, dtype=F64) - 1 / c)
    assert (m @ m.T - target).abs().max().item() <= 1e-12
    assert m.sum(0).abs().max().item() <= 1e-12
    assert torch.equal(m, simplex_etf(c, d, scale=scale))  # reproducible
    other = simplex_etf(c, d, scale=scale, generator=gen(1))
    assert not torch.allclose(m, other)  # a different orientation ...
    assert (other @ other.T - target).abs().max().item() <= 1e-12  # ... of the same frame
    assert simplex_etf(3, 2, dtype=torch.float32).dtype == torch.float32


def test_bad_inputs_raise_errors_that_name_the_problem():
    h = torch.randn(12, 4, dtype=F64)
    w = torch.randn(3, 4, dtype=F64)
    y = torch.arange(3).repeat(4)
    with pytest.raises(ShapeError, match=r"classes \[2\] have no samples"):
        metrics(h, y % 2, w)
    with pytest.raises(ShapeError, match=r"\(C, d\)"):
        metrics(h, y, w[:, :3])
    with pytest.raises(ShapeError, match="integer"):
        metrics(h, y.to(F64), w)
    with pytest.raises(ShapeError, match=r"\[0, 3\)"):
        metrics(h, y + 1, w)
    with pytest.raises(ShapeError, match=r"\(N,\)"):
        metrics(h, y[:5], w)
    with pytest.raises(ShapeError, match="C ≥ 2"):
        metrics(h, torch.zeros(12, dtype=torch.long), w[:1])
    with pytest.raises(ShapeError, match=r"\(C,\)"):
        metrics(h, y, w, torch.zeros(4))
    with pytest.raises(ConfigError, match="non-finite"):
        metrics(torch.full_like(h, float("nan")), y, w)
    with pytest.raises(ShapeError, match="d ≥ C − 1"):
        simplex_etf(5, 3)
    with pytest.raises(ConfigError, match="C ≥ 2"):
        simplex_etf(1, 3)


def test_metrics_leave_model_inputs_and_rng_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    model.train()
    x = torch.randn(30, 5)
    y = torch.arange(3).repeat(10)
    feats = model[:3](x)
    nn.functional.cross_entropy(model[3](feats), y).backward(retain_graph=True)
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    feat_copy, y_copy = feats.detach().clone(), y.clone()
    rng = torch.get_rng_state()

    out = metrics(feats, y, model[3].weight, model[3].bias)

    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert torch.equal(feats.detach(), feat_copy) and torch.equal(y, y_copy)
    for p, v, g in zip(model.parameters(), params, grads):
        assert torch.equal(p, v) and torch.equal(p.grad, g)
    assert all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
