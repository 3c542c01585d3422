"""Advani & Saxe (2017) error curves: the Marchenko-Pastur quadrature against scipy and closed
moments, and the curves against direct simulations of gradient flow and gradient descent."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from layerlab.errors import ConfigError
from layerlab.lens.theory.linear_regression import (
    generalization_error,
    generalization_error_limit,
    mp_density,
    mp_edges,
    mp_quadrature,
    training_error,
    training_error_limit,
)

F64 = torch.float64
ALPHAS = [1e-3, 0.1, 0.5, 0.99, 1.0, 1.01, 1.5, 3.0, 1e3]


@pytest.mark.parametrize("alpha", ALPHAS)
def test_quadrature_reproduces_mp_moments(alpha):
    # Mass min(1, alpha) (the rest is the atom at 0), mean alpha, second moment alpha^2 + alpha.
    lam, w = mp_quadrature(alpha)
    assert abs(w.sum().item() - min(1.0, alpha)) < 1e-12 * min(1.0, alpha)
    assert abs((w * lam).sum().item() - alpha) < 1e-12 * alpha
    assert abs((w * lam**2).sum().item() - (alpha**2 + alpha)) < 1e-12 * (alpha**2 + alpha)
    if alpha != 1.0:  # int rho / lambda: alpha/(1-alpha) or 1/(alpha-1) (the limit's variance term)
        inv = alpha / (1 - alpha) if alpha < 1 else 1 / (alpha - 1)
        assert abs((w / lam).sum().item() - inv) < 1e-10 * inv


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.99, 1.01, 1.5, 3.0, 100.0])
def test_quadrature_against_scipy(alpha):
    lo, hi = mp_edges(alpha)
    # mp_density by adaptive quadrature: total mass.
    density = lambda x: mp_density(torch.tensor(x, dtype=F64), alpha).item()
    mass = quad(density, lo, hi, epsabs=0, epsrel=1e-10, limit=200)[0]
    assert abs(mass - min(1.0, alpha)) < 1e-8
    # Reference density written out here (numpy-free scalar form) for speed inside quad.
    rho = lambda x: math.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * math.pi * x)
    assert abs(rho(0.5 * (lo + hi)) - density(0.5 * (lo + hi))) < 1e-14
    lam, w = mp_quadrature(alpha)
    pts = [lo + (hi - lo) * 10.0**-k for k in range(1, 8)]
    for t in (0.1, 3.0, 100.0, 1e4):
        for g_np, g_t in (
            (lambda x: math.exp(-2 * x * t), lambda x: torch.exp(-2 * x * t)),
            (lambda x: math.expm1(-x * t) ** 2 / x, lambda x: torch.expm1(-x * t) ** 2 / x),
        ):
            ref = quad(lambda x: rho(x) * g_np(x), lo, hi, epsabs=0, epsrel=1e-12, limit=500, points=pts)[0]
            got = (w * g_t(lam)).sum().item()
            assert abs(got - ref) <= 1e-10 * abs(ref) + 1e-300, (t, got, ref)


def test_curves_at_zero_and_limits():
    kw = dict(teacher_var=1.0, noise_var=0.25, w0_var=0.09)
    for alpha in (0.5, 1.5, 3.0):
        total = 1.0 + 0.25 + 0.09
        assert abs(generalization_error(0.0, alpha, **kw).item() - total) < 1e-12
        assert abs(training_error(0.0, alpha, **kw).item() - total) < 1e-12
        # t -> inf: quadrature at t = 1e8 tau against the closed forms.
        assert abs(generalization_error(1e8, alpha, **kw).item() - generalization_error_limit(alpha, **kw)) < 1e-12
        assert abs(training_error(1e8, alpha, **kw).item() - training_error_limit(alpha, noise_var=0.25)) < 1e-12
    # Small steps: k steps of size eta -> the flow at t = eta k (relative gap O(eta)).
    for curve in (generalization_error, training_error):
        flow = curve(torch.tensor([0.5, 2.0, 8.0]), 1.5, **kw)
        gd = curve(torch.tensor([0.5, 2.0, 8.0]) / 1e-5, 1.5, eta=1e-5, **kw)
        assert torch.allclose(gd, flow, rtol=1e-4) and not torch.allclose(gd, flow, rtol=1e-9)
    # snr parametrization: teacher variance = snr * noise_var.
    assert generalization_error(2.0, 0.7, 4.0, noise_var=0.25).item() == pytest.approx(
        generalization_error(2.0, 0.7, teacher_var=1.0, noise_var=0.25).item(), rel=1e-14)
    # Noise-free teacher: the student recovers the teacher exactly iff it sees N independent examples.
    assert generalization_error_limit(0.4, teacher_var=1.0, noise_var=0.0) == pytest.approx(0.6)
    assert generalization_error_limit(2.0, teacher_var=1.0, noise_var=0.0) == 0.0
    assert generalization_error(1e9, 2.0, teacher_var=1.0, noise_var=0.0).item() < 1e-12


def test_peak_at_alpha_one():
    kw = dict(teacher_var=1.0, noise_var=0.5)
    assert generalization_error_limit(1.0, **kw) == math.inf
    # Asymptotic error rises towards alpha = 1 from both sides (overfitting peak).
    left = [generalization_error_limit(a, **kw) for a in (0.2, 0.5, 0.8, 0.95, 0.99)]
    right = [generalization_error_limit(a, **kw) for a in (5.0, 2.0, 1.25, 1.05, 1.01)]
    assert all(b > a for a, b in zip(left, left[1:])) and all(b > a for a, b in zip(right, right[1:]))
    # At alpha = 1 the noise term grows without bound like sqrt(t) (rho ~ 1/(pi sqrt(lambda)) at 0).
    noise = lambda t: (generalization_error(t, 1.0, teacher_var=0.0, noise_var=1.0) - 1.0).item()
    assert abs(noise(4e8) / noise(1e8) - 2.0) < 1e-3
    # Overtraining (final minus best error over time) is largest near alpha = 1.
    t = torch.logspace(-2, 6, 400, dtype=F64)
    over = {a: generalization_error_limit(a, **kw) - generalization_error(t, a, **kw).min().item()
            for a in (0.3, 0.7, 0.9, 1.1, 1.5, 3.0)}
    assert max(over, key=over.get) in (0.9, 1.1) and min(over.values()) >= 0


def _teacher_student(alpha, seed, N=300, K=64, tv=1.0, nv=0.25, w0v=0.09):
    """K independent regressions sharing the inputs X (N x P, entries N(0, 1/N))."""
    g = torch.Generator().manual_seed(seed)
    P = round(alpha * N)
    X = torch.randn(N, P, generator=g, dtype=F64) / math.sqrt(N)
    wbar = math.sqrt(tv) * torch.randn(K, N, generator=g, dtype=F64)
    eps = math.sqrt(nv) * torch.randn(K, P, generator=g, dtype=F64)
    w0 = math.sqrt(w0v) * torch.randn(K, N, generator=g, dtype=F64)
    return X, wbar, wbar @ X + eps, w0


def _errors(W, wbar, X, Y, nv):
    """E_g = |w - wbar|^2 / N + sigma_eps^2 (exact average over fresh x and eps); E_t = mean residual^2."""
    N, P = X.shape
    eg = ((W - wbar) ** 2).sum((-1, -2)) / (N * W.shape[-2]) + nv
    et = ((Y - W @ X) ** 2).sum((-1, -2)) / (P * W.shape[-2])
    return eg, et


@pytest.mark.parametrize("alpha", [0.5, 1.5, 3.0])
def test_gradient_flow_simulation_matches(alpha):
    """Exact gradient-flow iterates tau dW/dt = (Y - W X) X^T via the eigendecomposition of X X^T,
    N = 300, 64 outputs, 4 seeds, at t in {0, 0.3, 1, 3, 10, 30, inf}. Tolerance: 2.5% of the
    theory plus 1e-3 (errors are O(1); the 1e-3 covers training errors decaying to ~0 at
    alpha < 1, where finite-N edge fluctuations dominate). Measured: <= 1.2% relative, and
    <= 5e-5 absolute where the training error has decayed below 3e-3."""
    tv, nv, w0v = 1.0, 0.25, 0.09
    ts = torch.tensor([0.0, 0.3, 1.0, 3.0, 10.0, 30.0], dtype=F64)
    eg_sum, et_sum = 0, 0
    for seed in range(4):
        X, wbar, Y, w0 = _teacher_student(alpha, seed, tv=tv, nv=nv, w0v=w0v)
        lam, Q = torch.linalg.eigh(X @ X.T)
        live = lam > 1e-9  # exact zeros (alpha < 1): no data, no drive, frozen
        lam_safe = torch.where(live, lam, torch.ones_like(lam))
        e0 = (w0 - wbar) @ Q
        drive = (Y - wbar @ X) @ X.T @ Q  # eps X^T in the eigenbasis
        decay = torch.exp(-lam * ts[:, None])[:, None, :]
        gain = torch.where(live, -torch.expm1(-lam * ts[:, None]) / lam_safe, 0.0)[:, None, :]
        W = wbar + (e0 * decay + drive * gain) @ Q.T  # (T, K, N)
        W_inf = wbar + torch.where(live, drive / lam_safe, e0) @ Q.T
        eg, et = _errors(torch.cat([W, W_inf[None]]), wbar, X, Y, nv)
        eg_sum, et_sum = eg_sum + eg / 4, et_sum + et / 4
    kw = dict(teacher_var=tv, noise_var=nv, w0_var=w0v)
    th_g = torch.cat([generalization_error(ts, alpha, **kw), torch.tensor([generalization_error_limit(alpha, **kw)])])
    th_t = torch.cat([training_error(ts, alpha, **kw), torch.tensor([training_error_limit(alpha, noise_var=nv)])])
    assert ((eg_sum - th_g).abs() <= 0.025 * th_g + 1e-3).all(), (eg_sum - th_g) / th_g
    assert ((et_sum - th_t).abs() <= 0.025 * th_t + 1e-3).all(), (et_sum - th_t) / th_t


@pytest.mark.parametrize("eta", [0.15, 0.3])
def test_gradient_descent_loop_matches(eta):
    """Plain GD loop W <- W + eta (Y - W X) X^T at alpha = 1.5 (lambda_+ = 4.95: eta = 0.3 makes
    1 - eta lambda negative on the upper bulk, oscillating modes), N = 300, 64 outputs, 3 seeds;
    compared with the discrete-time curves (t = steps) within 2.5% of theory + 1e-3. Measured:
    <= 1.0% relative."""
    alpha, tv, nv, w0v = 1.5, 1.0, 0.25, 0.09
    checkpoints = [0, 3, 10, 40]
    eg_sum = torch.zeros(len(checkpoints), dtype=F64)
    et_sum = torch.zeros(len(checkpoints), dtype=F64)
    for seed in range(3):
        X, wbar, Y, W = _teacher_student(alpha, seed, tv=tv, nv=nv, w0v=w0v)
        for k in range(checkpoints[-1] + 1):
            if k in checkpoints:
                eg, et = _errors(W, wbar, X, Y, nv)
                eg_sum[checkpoints.index(k)] += eg / 3
                et_sum[checkpoints.index(k)] += et / 3
            W = W + eta * (Y - W @ X) @ X.T
    steps = torch.tensor(checkpoints, dtype=F64)
    kw = dict(teacher_var=tv, noise_var=nv, w0_var=w0v, eta=eta)
    th_g, th_t = generalization_error(steps, alpha, **kw), training_error(steps, alpha, **kw)
    assert ((eg_sum - th_g).abs() <= 0.025 * th_g + 1e-3).all(), (eg_sum - th_g) / th_g
    assert ((et_sum - th_t).abs() <= 0.025 * th_t + 1e-3).all(), (et_sum - th_t) / th_t


def test_dtype_shape_and_bad_inputs():
    t = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float32)
    out = generalization_error(t, 2.0, 1.0)
    assert out.shape == (2, 2) and out.dtype == torch.float32
    assert training_error(1.0, 2.0, 1.0).dtype == F64 and training_error(1.0, 2.0, 1.0).shape == ()
    assert mp_density(torch.tensor([-1.0, 0.0, 100.0]), 2.0).abs().max() == 0
    with pytest.raises(ConfigError, match="alpha"):
        generalization_error(1.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="exactly one"):
        generalization_error(1.0, 2.0, 1.0, teacher_var=1.0)
    with pytest.raises(ConfigError, match="exactly one"):
        training_error(1.0, 2.0)
    with pytest.raises(ConfigError, match="t must be >= 0"):
        generalization_error(-1.0, 2.0, 1.0)
    with pytest.raises(ConfigError, match="eta"):
        training_error(1.0, 2.0, 1.0, eta=0.0)
    with pytest.raises(ConfigError, match="noise_var"):
        generalization_error_limit(2.0, teacher_var=1.0, noise_var=-1.0)


def test_side_effect_free():
    # Pure functions of numbers: the global RNG and the input tensor are untouched.
    rng = torch.get_rng_state()
    t = torch.linspace(0, 10, 5, dtype=F64)
    before = t.clone()
    generalization_error(t, 0.5, 2.0, w0_var=0.1)
    training_error(t, 3.0, 2.0, eta=0.1)
    mp_quadrature(1.0)
    assert torch.equal(t, before) and torch.equal(rng, torch.get_rng_state())
