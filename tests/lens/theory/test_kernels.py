"""Arc-cosine kernels against quadrature, Monte Carlo and their closed forms at θ = 0, π/2, π;
the 2-layer ReLU NTK/NNGP against Monte Carlo and against the empirical NTK of wide networks
(error falling like width^(-1/2))."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import ntk
from layerlab.lens.theory.kernels import TwoLayerReLU, arccos_kernel, relu_nngp, relu_ntk

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pairs_at_angles(thetas: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_i, y_i in R^5 with angle thetas[i] and random norms, in a random orientation."""
    g = _gen(seed)
    q = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))[0]
    t = torch.tensor(thetas, dtype=F64)
    r1 = 0.5 + torch.rand(len(t), 1, generator=g, dtype=F64)
    r2 = 0.5 + torch.rand(len(t), 1, generator=g, dtype=F64)
    e1, e2 = q[:, 0], q[:, 1]
    x = r1 * e1
    y = r2 * (torch.cos(t)[:, None] * e1 + torch.sin(t)[:, None] * e2)
    return x, y


def _quadrature(n: int, theta: float, nx: float, ny: float) -> float:
    """k_n from its Gaussian integral restricted to the plane of x and y (independent of J_n):
    k_n = (2ⁿ n!/π) ‖x‖ⁿ‖y‖ⁿ ∫ cosⁿφ cosⁿ(φ − θ) dφ over {φ : cos φ > 0, cos(φ − θ) > 0}."""
    val, _ = integrate.quad(lambda p: (math.cos(p) * math.cos(p - theta)) ** n, theta - math.pi / 2,
                            math.pi / 2, epsabs=1e-14, epsrel=1e-13)
    return 2**n * math.factorial(n) / math.pi * (nx * ny) ** n * val


def test_arccos_against_quadrature():
    thetas = [0.0, 1e-6, 0.3, 1.0, math.pi / 2, 2.0, 3.0, math.pi - 1e-6, math.pi]
    x, y = _pairs_at_angles(thetas, 0)
    for n in (0, 1, 2):
        k = torch.diagonal(arccos_kernel(x, y, n))
        ref = torch.tensor([_quadrature(n, t, float(a.norm()), float(b.norm())) for t, a, b in zip(thetas, x, y)],
                           dtype=F64)
        assert (k - ref).abs().max() < 1e-10, (n, k - ref)  # quadrature tolerance ~1e-13


def test_arccos_closed_forms_at_special_angles():
    x, y = _pairs_at_angles([0.0, math.pi / 2, math.pi], 1)
    nx, ny = x.norm(dim=1), y.norm(dim=1)
    k0, k1, k2 = (torch.diagonal(arccos_kernel(x, y, n)) for n in (0, 1, 2))
    # θ = 0: J_0 = π, J_1 = π, J_2 = 3π
    assert abs(float(k0[0]) - 1) < 1e-14
    assert abs(float(k1[0] - nx[0] * ny[0])) < 1e-14
    assert abs(float(k2[0] - 3 * (nx[0] * ny[0]) ** 2)) < 1e-13
    # θ = π/2: J_0 = π/2, J_1 = 1, J_2 = π/2
    assert abs(float(k0[1]) - 0.5) < 1e-14
    assert abs(float(k1[1] - nx[1] * ny[1] / math.pi)) < 1e-14
    assert abs(float(k2[1] - (nx[1] * ny[1]) ** 2 / 2)) < 1e-13
    # θ = π: all vanish (the half-spaces are disjoint)
    assert max(abs(float(k[2])) for k in (k0, k1, k2)) < 1e-14
    # the diagonal is exact even where arccos of a rounded cosine would lose ~8 digits
    z = torch.randn(50, 7, generator=_gen(2), dtype=F64)
    assert (torch.diagonal(arccos_kernel(z, None, 0)) - 1).abs().max() < 1e-14
    assert (torch.diagonal(arccos_kernel(z, None, 1)) - (z * z).sum(1)).abs().max() < 1e-13


def test_arccos_ntk_nngp_against_monte_carlo():
    """Means over M = 200,000 Gaussian w within 4 standard errors of the closed forms."""
    g = _gen(3)
    pts = torch.randn(4, 3, generator=g, dtype=F64)
    w = torch.randn(200_000, 3, generator=g, dtype=F64)
    proj = w @ pts.T  # (M, 4)
    step, relu = (proj > 0).to(F64), proj.clamp_min(0)
    i, j = torch.triu_indices(4, 4)

    def check(samples: torch.Tensor, closed: torch.Tensor) -> None:
        mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
        z = ((mean - closed[i, j]) / se).abs()
        assert z.max() < 4.0, z

    for n in (0, 1, 2):
        s = 2 * step[:, i] * step[:, j] * (proj[:, i] * proj[:, j]) ** n
        check(s, arccos_kernel(pts, pts, n))
    check(relu[:, i] * relu[:, j], relu_nngp(pts))
    gram = pts @ pts.T
    check(relu[:, i] * relu[:, j] + gram[i, j] * step[:, i] * step[:, j], relu_ntk(pts))


def test_ntk_and_nngp_shapes_diagonal_and_psd():
    g = _gen(4)
    x1, x2 = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    for bias in (False, True):
        k = relu_ntk(x1, x2, bias=bias)
        assert k.shape == (6, 4) and k.dtype == F64
        sq = (x1 * x1).sum(1) + (1.0 if bias else 0.0)
        assert (torch.diagonal(relu_ntk(x1, bias=bias)) - sq).abs().max() < 1e-13  # Θ(x, x) = ‖x̃‖²
        assert (torch.diagonal(relu_nngp(x1, bias=bias)) - sq / 2).abs().max() < 1e-13  # K(x, x) = ‖x̃‖²/2
        full = relu_ntk(torch.cat([x1, x2]), bias=bias)
        assert (full[:6, 6:] - k).abs().max() < 1e-14
        assert torch.linalg.eigvalsh(full).min() > -1e-12
    assert relu_ntk(x1.float()).dtype == torch.float32


def test_two_layer_relu_parameterization_and_errors():
    before = torch.get_rng_state()
    a = TwoLayerReLU(3, 16, dtype=F64)
    b = TwoLayerReLU(3, 16, _gen(0), dtype=F64)
    assert torch.equal(torch.get_rng_state(), before)  # default generator: global RNG untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x = torch.randn(2, 5, 3, dtype=F64)
    out = a(x)
    assert out.shape == (2, 5, 1)
    manual = torch.relu(x @ a.w.T) @ a.a / 4.0  # (1/√16) Σ_j a_j relu(w_jᵀx)
    assert (out[..., 0] - manual).abs().max() < 1e-14
    assert [n for n, _ in TwoLayerReLU(3, 4, bias=True).named_parameters()] == ["w", "a", "b"]
    with pytest.raises(ShapeError):
        a(torch.randn(4, 2, dtype=F64))
    with pytest.raises(ConfigError):
        arccos_kernel(x[0], x[0], 3)
    with pytest.raises(ShapeError):
        arccos_kernel(x, None, 1)
    with pytest.raises(ShapeError):
        relu_ntk(x[0], torch.randn(2, 4, dtype=F64))


def test_two_layer_nngp_from_network_draws():
    """Per-unit outputs u_j(x) = a_j relu(w_jᵀx + b_j) of one very wide network are i.i.d.; their
    second moment is the NNGP kernel (4 standard errors)."""
    g = _gen(5)
    pts = torch.randn(4, 3, generator=g, dtype=F64)
    net = TwoLayerReLU(3, 200_000, _gen(6), bias=True, dtype=F64)
    with torch.no_grad():
        u = net.a * torch.relu(pts @ net.w.T + net.b)  # (4, m)
    i, j = torch.triu_indices(4, 4)
    s = u[i] * u[j]
    z = ((s.mean(1) - relu_nngp(pts, bias=True)[i, j]) / (s.std(1) / math.sqrt(s.shape[1]))).abs()
    assert z.max() < 4.0, z


def test_empirical_ntk_converges_like_inverse_sqrt_width():
    """Θ_m is an average of m i.i.d. terms with mean Θ_∞, so ‖Θ_m − Θ_∞‖_F/‖Θ_∞‖_F ∝ m^(-1/2).
    Mean over 16 seeds per width; the fitted log-log slope must lie in [-0.65, -0.35]
    (measured -0.45..-0.53 over other data/seed draws), and the error at m = 4096 below 5%."""
    x = torch.randn(6, 3, generator=_gen(7), dtype=F64)
    limit = relu_ntk(x)
    widths = [64, 256, 1024, 4096]
    errors, mean_kernel = [], None
    for m in widths:
        runs = []
        kernels = []
        for seed in range(16):
            k = ntk.empirical(TwoLayerReLU(3, m, _gen(1000 * m + seed), dtype=F64), x, output="trace")
            runs.append(float((k - limit).norm() / limit.norm()))
            kernels.append(k)
        errors.append(float(np.mean(runs)))
        mean_kernel = torch.stack(kernels).mean(0)
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.65 <= slope <= -0.35, (slope, errors)
    assert errors[-1] < 0.05, errors
    # unbiased at finite width: the mean of 16 kernels is ~4x closer than one of them
    assert float((mean_kernel - limit).norm() / limit.norm()) < errors[-1] / 2


def test_empirical_ntk_with_bias_matches_biased_limit():
    x = torch.randn(5, 2, generator=_gen(8), dtype=F64)
    k = torch.stack([ntk.empirical(TwoLayerReLU(2, 4096, _gen(s), bias=True, dtype=F64), x, output="trace")
                     for s in range(8)]).mean(0)
    right, wrong = relu_ntk(x, bias=True), relu_ntk(x, bias=False)
    # mean of 8 width-4096 kernels: expected error ~0.03/√8 ≈ 0.01; the unbiased limit is far
    assert float((k - right).norm() / right.norm()) < 0.03
    assert float((k - wrong).norm() / right.norm()) > 0.2
