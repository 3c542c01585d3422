"""Infinite-width NNGP/NTK of deep fully-connected networks: depth 2 against theory.kernels, erf's
closed form against Gaussian quadrature, the NNGP against Monte Carlo over random networks, the NTK
against lens.ntk's empirical NTK of wide networks (at init and after training); kernel regression
and the gradient-descent predictor against their limits and an exactly linear model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import ntk as empirical_ntk
from layerlab.lens.theory.infinite_width import (FullyConnected, erf_expectations, gradient_descent_mse,
                                                 kernel_regression, nngp, nngp_ntk, ntk, relu_expectations)
from layerlab.lens.theory.kernels import relu_nngp, relu_ntk

F64 = torch.float64


def _x(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("bias", [False, True])
def test_depth_two_relu_equals_the_two_layer_kernels(bias: bool) -> None:
    x, y = _x(7, 5, 0), _x(4, 5, 1)
    x[3] = 2.5 * x[0]  # parallel inputs: theta = 0 exactly
    s, t = nngp_ntk(x, y, depth=2, w_std=(math.sqrt(5), 1.0), b_std=(float(bias), 0.0))
    torch.testing.assert_close(s, relu_nngp(x, y, bias=bias), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t, relu_ntk(x, y, bias=bias), rtol=1e-12, atol=1e-12)
    s_xx, t_xx = nngp_ntk(x, depth=2, w_std=(math.sqrt(5), 1.0), b_std=(float(bias), 0.0))
    torch.testing.assert_close(t_xx, relu_ntk(x, bias=bias), rtol=1e-12, atol=1e-12)


def test_depth_one_is_the_scaled_linear_kernel() -> None:
    x = _x(5, 3, 2)
    s, t = nngp_ntk(x, depth=1, w_std=2.0, b_std=0.5)
    torch.testing.assert_close(s, 4.0 * x @ x.T / 3 + 0.25, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(t, s, rtol=0, atol=0)


def _gauss_expectation(f, s11: float, s12: float, s22: float, points: int = 120) -> float:
    """E[f(u) g(v)] by 2-D Gauss-Hermite quadrature over (u, v) = L z, z ~ N(0, I)."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    l11 = math.sqrt(s11)
    l21 = s12 / l11
    l22 = math.sqrt(max(s22 - l21 * l21, 0.0))
    u = l11 * z[:, None] + 0 * z[None, :]
    v = l21 * z[:, None] + l22 * z[None, :]
    return float((w[:, None] * w[None, :] * f(u, v)).sum())


def test_erf_closed_forms_against_gaussian_quadrature() -> None:
    from scipy.special import erf
    cases = [(0.3, 0.1, 0.7), (1.0, -0.6, 0.9), (2.0, 1.99, 2.0), (0.5, 0.0, 0.2), (1.5, -1.2, 1.1)]
    for s11, s12, s22 in cases:
        k, kdot = erf_expectations(torch.tensor([[s11]], dtype=F64), torch.tensor([[s12]], dtype=F64),
                                   torch.tensor([[s22]], dtype=F64))
        ref = _gauss_expectation(lambda u, v: erf(u) * erf(v), s11, s12, s22)
        dref = _gauss_expectation(lambda u, v: 4 / math.pi * np.exp(-u * u - v * v), s11, s12, s22)
        assert abs(k.item() - ref) < 1e-8, (s11, s12, s22, k.item(), ref)
        assert abs(kdot.item() - dref) < 1e-8, (s11, s12, s22, kdot.item(), dref)


def test_relu_expectations_against_one_dimensional_quadrature() -> None:
    """u = l11 z1, v = l21 z1 + l22 z2: integrate z2 in closed form (E relu(a + b z) = a Phi(a/b) +
    b phi(a/b), P(a + b z > 0) = Phi(a/b)) and z1 > 0 by adaptive quadrature."""
    from scipy import integrate
    from scipy.stats import norm
    for s11, s12, s22 in [(0.8, 0.3, 1.3), (1.0, -0.9, 1.0), (2.0, 0.0, 0.5), (0.4, 0.39, 0.4)]:
        l11 = math.sqrt(s11)
        l21 = s12 / l11
        l22 = math.sqrt(s22 - l21 * l21)
        ref = integrate.quad(lambda z: l11 * z * (l21 * z * norm.cdf(l21 * z / l22) + l22 * norm.pdf(l21 * z / l22))
                             * norm.pdf(z), 0, np.inf, epsabs=1e-13, epsrel=1e-13)[0]
        dref = integrate.quad(lambda z: norm.cdf(l21 * z / l22) * norm.pdf(z), 0, np.inf,
                              epsabs=1e-13, epsrel=1e-13)[0]
        k, kdot = relu_expectations(torch.tensor([[s11]], dtype=F64), torch.tensor([[s12]], dtype=F64),
                                    torch.tensor([[s22]], dtype=F64))
        assert abs(k.item() - ref) < 1e-10 and abs(kdot.item() - dref) < 1e-10, (s11, s12, s22)


def _relu_quad(s11: float, s12: float, s22: float) -> tuple[float, float]:
    """E[relu(u) relu(v)], E[step(u) step(v)] by 1-D adaptive quadrature (z2 integrated in closed form)."""
    from scipy import integrate
    from scipy.stats import norm
    l11 = math.sqrt(s11)
    l21 = s12 / l11
    l22 = math.sqrt(max(s22 - l21 * l21, 1e-300))
    k = integrate.quad(lambda z: l11 * z * (l21 * z * norm.cdf(l21 * z / l22) + l22 * norm.pdf(l21 * z / l22))
                       * norm.pdf(z), 0, np.inf, epsabs=1e-13, epsrel=1e-13)[0]
    kdot = integrate.quad(lambda z: norm.cdf(l21 * z / l22) * norm.pdf(z), 0, np.inf, epsabs=1e-13, epsrel=1e-13)[0]
    return k, kdot


def _erf_quad(s11: float, s12: float, s22: float) -> tuple[float, float]:
    from scipy.special import erf
    return (_gauss_expectation(lambda u, v: erf(u) * erf(v), s11, s12, s22),
            _gauss_expectation(lambda u, v: 4 / math.pi * np.exp(-u * u - v * v), s11, s12, s22))


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_recursion_against_a_reference_by_quadrature(activation: str) -> None:
    """The whole recursion for one pair of inputs, written as the math with every Gaussian expectation
    taken by numerical integration instead of a closed form: depth 4, per-layer sigma_w, sigma_b."""
    x = _x(2, 3, 14)
    ws, bs = [1.3, 1.6, 0.9, 1.2], [0.2, 0.5, 0.0, 0.3]
    quad = _relu_quad if activation == "relu" else _erf_quad
    c = [[ws[0] ** 2 * float(x[i] @ x[j]) / 3 + bs[0] ** 2 for j in range(2)] for i in range(2)]
    theta = c[0][1]
    for l in range(1, 4):
        k11 = quad(c[0][0], c[0][0], c[0][0])[0]
        k22 = quad(c[1][1], c[1][1], c[1][1])[0]
        k12, kdot12 = quad(c[0][0], c[0][1], c[1][1])
        w2, b2 = ws[l] ** 2, bs[l] ** 2
        c = [[w2 * k11 + b2, w2 * k12 + b2], [w2 * k12 + b2, w2 * k22 + b2]]
        theta = theta * w2 * kdot12 + c[0][1]
    s, t = nngp_ntk(x, depth=4, activation=activation, w_std=ws, b_std=bs)
    assert abs(s[0, 1].item() - c[0][1]) < 1e-8 and abs(t[0, 1].item() - theta) < 1e-8, (s[0, 1], c[0][1], t[0, 1], theta)
    assert abs(s[1, 1].item() - c[1][1]) < 1e-8


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_nngp_matches_monte_carlo_over_random_networks(activation: str) -> None:
    """Output covariance of 12 random depth-3 nets of width 1024 (1024 outputs each: i.i.d. given
    the hidden layers) against the recursion. Seed-to-seed spread of the max entry error measured
    at about 0.02 of the largest variance; tolerance 0.08 (about 4 sigma)."""
    x = _x(5, 4, 3)
    opts = dict(depth=3, activation=activation, w_std=1.4, b_std=0.5)
    k = nngp(x, **opts)
    acc = torch.zeros_like(k)
    nets = 12
    for s in range(nets):
        net = FullyConnected(4, 1024, out_features=1024, dtype=F64,
                             generator=torch.Generator().manual_seed(100 + s), **opts)
        with torch.no_grad():
            f = net(x)
        acc += f @ f.T / f.shape[1] / nets
    scale = k.diagonal().max()
    assert (acc - k).abs().max() / scale < 0.08
    wrong = nngp(x, **{**opts, "b_std": 0.0})  # the test can tell a missing bias
    assert (acc - wrong).abs().max() / scale > 0.16


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _train(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> float:
    params = list(net.parameters())
    for _ in range(steps):
        loss = 0.5 * (net(x).squeeze(-1) - y).square().mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    with torch.no_grad():
        return float(0.5 * (net(x).squeeze(-1) - y).square().mean())


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_empirical_ntk_converges_to_the_recursion_before_and_after_training(activation: str) -> None:
    """Relative Frobenius error of the empirical NTK of FullyConnected (depth 3, NTK parameterization)
    against ntk(...), mean of 2 seeds, at widths 64, 256, 1024, at init and after 10 steps of
    full-batch GD (lr 1) on a sphere regression. Fluctuations shrink like width^-1/2: the error must
    fall from width to width and be below 0.12 at 1024 (measured ~0.05-0.07)."""
    x = _x(12, 4, 4)
    x = x / x.norm(dim=1, keepdim=True)
    y = 2 * x[:, 0] + 4 * x[:, 1] * x[:, 2]
    opts = dict(depth=3, activation=activation, w_std=1.5, b_std=0.3)
    k = ntk(x, **opts)
    before, after = [], []
    for width in (64, 256, 1024):
        e0 = e1 = 0.0
        for seed in (0, 1):
            net = FullyConnected(4, width, dtype=F64, generator=torch.Generator().manual_seed(seed * 7919 + width),
                                 **opts)
            e0 += _rel(empirical_ntk.empirical(net, x, output="trace"), k) / 2
            loss = _train(net, x, y, lr=1.0, steps=10)
            assert loss < 0.5 * float(0.5 * y.square().mean())  # it did train
            e1 += _rel(empirical_ntk.empirical(net, x, output="trace"), k) / 2
        before.append(e0)
        after.append(e1)
    assert before[0] > before[1] > before[2] and before[2] < 0.12, before
    assert after[0] > after[1] > after[2] and after[2] < 0.12, after


def test_kernel_regression_interpolates_and_is_the_gp_posterior_mean() -> None:
    x, xs = _x(8, 3, 5), _x(3, 3, 6)
    y = torch.sin(x[:, 0]) + x[:, 1]
    opts = dict(depth=3, activation="erf", w_std=1.2, b_std=0.2)
    kxx, ksx = nngp(x, **opts), nngp(xs, x, **opts)
    torch.testing.assert_close(kernel_regression(kxx, kxx, y), y, rtol=1e-9, atol=1e-9)
    # posterior mean from the joint Gaussian: K_sx (K_xx + s I)^-1 y, here by the Cholesky route
    s = 0.3
    chol = torch.linalg.cholesky(kxx + s * torch.eye(8, dtype=F64))
    ref = ksx @ torch.cholesky_solve(y[:, None], chol)[:, 0]
    torch.testing.assert_close(kernel_regression(ksx, kxx, y, ridge=s), ref, rtol=1e-12, atol=1e-12)
    y2 = torch.stack([y, -2 * y], 1)
    torch.testing.assert_close(kernel_regression(ksx, kxx, y2, ridge=s)[:, 1], -2 * ref, rtol=1e-12, atol=1e-12)


def test_gradient_descent_limits() -> None:
    x, xs = _x(10, 3, 7), _x(4, 3, 8)
    y = torch.cos(x[:, 0]) * x[:, 2]
    opts = dict(depth=3, activation="relu", w_std=1.4, b_std=0.1)
    kxx, ksx = ntk(x, **opts), ntk(xs, x, **opts)
    f0x, f0s = 0.3 * _x(10, 1, 9)[:, 0], 0.3 * _x(4, 1, 10)[:, 0]
    # t -> infinity: kernel regression (from f0: f0 + regression of the residual)
    torch.testing.assert_close(gradient_descent_mse(ksx, kxx, y, math.inf), kernel_regression(ksx, kxx, y),
                               rtol=1e-10, atol=1e-10)
    late = gradient_descent_mse(ksx, kxx, y, 1e7, lr=1.0)
    torch.testing.assert_close(late, kernel_regression(ksx, kxx, y), rtol=1e-8, atol=1e-8)
    inf0 = gradient_descent_mse(ksx, kxx, y, math.inf, f0_test=f0s, f0_train=f0x)
    torch.testing.assert_close(inf0, f0s + kernel_regression(ksx, kxx, y - f0x), rtol=1e-10, atol=1e-10)
    # training outputs reach the targets
    torch.testing.assert_close(gradient_descent_mse(kxx, kxx, y, math.inf), y, rtol=1e-9, atol=1e-9)
    # small t: f0 + (eta t/N) K(x,X) r - (eta t/N)^2/2 K(x,X) K r + O(t^3)
    n, lr = 10, 0.5
    r = y - f0x
    first = (lr / n) * ksx @ r
    second = -0.5 * (lr / n) ** 2 * ksx @ (kxx @ r)
    for t in (1e-2, 1e-3):
        ft = gradient_descent_mse(ksx, kxx, y, t, lr, f0_test=f0s, f0_train=f0x)
        torch.testing.assert_close(ft, f0s + t * first + t * t * second, rtol=0, atol=50 * t ** 3)
        assert (ft - f0s - t * first).abs().max() > 0.5 * (t * t * second).abs().max()  # second order is there
    assert torch.equal(gradient_descent_mse(ksx, kxx, y, 0.0, f0_test=f0s, f0_train=f0x), f0s)


def test_gradient_descent_is_exact_for_a_linearized_network() -> None:
    """A linearized small FullyConnected (f0 + J (theta - theta0)) trained by 40 steps of GD on the mean
    squared loss in float64 gives exactly the discrete predictor; gradient flow with the same
    eta t agrees to O(eta) only."""
    x, xs = _x(6, 3, 11), _x(3, 3, 12)
    y = x[:, 0] - x[:, 1] ** 2
    net = FullyConnected(3, 16, 3, "erf", w_std=1.3, b_std=0.4, dtype=F64)
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}

    def f(p, inp):
        return functional_call(net, p, (inp,))[:, 0]

    jx, js = jacrev(f)(p0, x), jacrev(f)(p0, xs)
    flat = lambda j: torch.cat([j[k].reshape(j[k].shape[0], -1) for k in p0], 1)  # noqa: E731
    jx, js = flat(jx), flat(js)
    with torch.no_grad():
        f0x, f0s = f(p0, x), f(p0, xs)
    theta = torch.zeros(jx.shape[1], dtype=F64, requires_grad=True)
    lr, steps = 0.7, 40
    for _ in range(steps):
        loss = 0.5 * (f0x + jx @ theta - y).square().mean()
        (g,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr * g
    pred = (f0s + js @ theta).detach()
    kxx, ksx = jx @ jx.T, js @ jx.T
    torch.testing.assert_close(empirical_ntk.empirical(net, x, output="trace"), kxx, rtol=1e-10, atol=1e-10)
    disc = gradient_descent_mse(ksx, kxx, y, steps, lr, f0_test=f0s, f0_train=f0x, discrete=True)
    torch.testing.assert_close(disc, pred, rtol=1e-10, atol=1e-10)
    flow = gradient_descent_mse(ksx, kxx, y, steps, lr, f0_test=f0s, f0_train=f0x)
    assert (flow - pred).abs().max() > 1e-6  # the discrete form is not the flow


def test_wide_networks_trained_by_gd_follow_the_infinite_width_predictor() -> None:
    """Lee et al. 2019: a wide network trained by GD (mean squared loss, 20 steps, lr 1) moves its test
    outputs by f_t - f_0 = Theta(x,X) Theta^-1 (I - (I - eta Theta/N)^t)(Y - f_0(X)) with the
    infinite-width NTK. Relative error of that change, mean of 2 seeds: falls with width, below 0.15 at
    width 512 (measured ~0.05-0.1; ~0.3 at width 64)."""
    x, xs = _x(8, 4, 20), _x(4, 4, 21)
    x, xs = x / x.norm(dim=1, keepdim=True), xs / xs.norm(dim=1, keepdim=True)
    y = 2 * x[:, 0] + 4 * x[:, 1] * x[:, 2]
    opts = dict(depth=3, activation="relu", w_std=1.5, b_std=0.3)
    kxx, ksx = ntk(x, **opts), ntk(xs, x, **opts)
    errors = []
    for width in (64, 512):
        e = 0.0
        for seed in (0, 1):
            net = FullyConnected(4, width, dtype=F64, generator=torch.Generator().manual_seed(seed * 31 + width),
                                 **opts)
            with torch.no_grad():
                f0x, f0s = net(x)[:, 0], net(xs)[:, 0]
            _train(net, x, y, lr=1.0, steps=20)
            with torch.no_grad():
                fs = net(xs)[:, 0]
            pred = gradient_descent_mse(ksx, kxx, y, 20, 1.0, f0_test=f0s, f0_train=f0x, discrete=True)
            e += float((fs - pred).norm() / (fs - f0s).norm()) / 2
        errors.append(e)
    assert errors[1] < errors[0] and errors[1] < 0.15, errors


def test_fully_connected_leaves_the_global_rng_and_its_ntk_methods_agree() -> None:
    state = torch.get_rng_state()
    net = FullyConnected(3, 32, 3, "erf", w_std=1.2, b_std=[0.0, 0.4, 0.1], dtype=F64)
    assert torch.equal(state, torch.get_rng_state())
    assert [n for n, _ in net.named_parameters()] == ["layers.0.weight", "layers.1.weight", "layers.2.weight",
                                                      "biases.0", "biases.1"]
    x = _x(5, 3, 15)
    k = empirical_ntk.empirical(net, x, output="trace")
    for method in ("ntvp", "structured"):
        torch.testing.assert_close(empirical_ntk.empirical(net, x, method=method, output="trace"), k,
                                   rtol=1e-10, atol=1e-12)


def test_bad_inputs_raise_clear_errors() -> None:
    x = _x(4, 3, 13)
    with pytest.raises(ConfigError, match="activation"):
        nngp(x, depth=2, activation="tanh")
    with pytest.raises(ConfigError, match="depth"):
        ntk(x, depth=0)
    with pytest.raises(ConfigError, match="one per layer"):
        ntk(x, depth=3, w_std=[1.0, 2.0])
    with pytest.raises(ConfigError, match=">= 0"):
        ntk(x, depth=2, b_std=-1.0)
    with pytest.raises(ShapeError, match="x2"):
        ntk(x, _x(2, 4, 0), depth=2)
    k = ntk(x, depth=2)
    with pytest.raises(ShapeError, match="targets"):
        kernel_regression(k, k, torch.zeros(5, dtype=F64))
    with pytest.raises(ConfigError, match="both"):
        gradient_descent_mse(k, k, torch.zeros(4, dtype=F64), 1.0, f0_test=torch.zeros(4, dtype=F64))
    with pytest.raises(ConfigError, match="integer"):
        gradient_descent_mse(k, k, torch.zeros(4, dtype=F64), 1.5, discrete=True)
    with pytest.raises(ShapeError, match="expected inputs"):
        FullyConnected(3, 8, 2)(torch.zeros(2, 4))
