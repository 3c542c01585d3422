"""MP-GELU (arXiv:2211.13402): the closed-form mean and variance of GELU(X), X ~ N(mu, sigma^2),
against adaptive quadrature (1e-8) and Monte Carlo; Owen's T against SciPy; the gate variance;
the linear layer's moments; limits, gradients and options. The activation contract runs over
every registered activation in test_activations.py."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

import layerlab
from layerlab.blocks.activations_mpgelu import MPGELU, gelu_moments, linear_moments, owens_t
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64
POINTS = [(0.0, 1.0), (1.3, 0.2), (-2.0, 3.0), (0.5, 10.0), (-5.0, 0.5), (3.0, 0.01), (-0.7, 0.05), (2.0, 4.0)]


def quad_moments(mu: float, var: float, gate: bool = False) -> tuple[float, float]:
    """E[X Phi(X)] and Var by adaptive quadrature over the Gaussian density (SciPy)."""
    sd = math.sqrt(var)
    pdf = lambda x: stats.norm.pdf(x, mu, sd)  # noqa: E731
    g = lambda x: x * stats.norm.cdf(x)  # noqa: E731
    sq = (lambda x: x * x * stats.norm.cdf(x)) if gate else (lambda x: g(x) ** 2)
    kw = {"epsabs": 1e-15, "epsrel": 1e-13, "limit": 500}
    lo, hi = mu - 40 * sd, mu + 40 * sd
    m = integrate.quad(lambda x: g(x) * pdf(x), lo, hi, **kw)[0]
    m2 = integrate.quad(lambda x: sq(x) * pdf(x), lo, hi, **kw)[0]
    return m, m2 - m * m


def test_owens_t_matches_scipy():
    h = torch.linspace(-12, 12, 97, dtype=F64)[:, None]
    a = torch.linspace(0.0, 1.0, 41, dtype=F64)[None, :]
    ref = torch.from_numpy(special.owens_t(*np.broadcast_arrays(h.numpy(), a.numpy())))
    torch.testing.assert_close(owens_t(h, a), ref, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("variance", ["exact", "gate"])
def test_moments_equal_quadrature(variance):
    mu = torch.tensor([p[0] for p in POINTS], dtype=F64)
    var = torch.tensor([p[1] for p in POINTS], dtype=F64)
    m, v = gelu_moments(mu, var, variance)
    for i, (mu_i, var_i) in enumerate(POINTS):
        qm, qv = quad_moments(mu_i, var_i, gate=variance == "gate")
        assert m[i].item() == pytest.approx(qm, rel=1e-8, abs=1e-12)
        assert v[i].item() == pytest.approx(qv, rel=1e-8, abs=1e-12)


def test_moments_match_monte_carlo():
    g = torch.Generator().manual_seed(0)
    n = 400_000
    for mu_i, var_i in POINTS[:5]:
        x = mu_i + math.sqrt(var_i) * torch.randn(n, dtype=F64, generator=g)
        y = torch.nn.functional.gelu(x)
        m, v = gelu_moments(torch.tensor(mu_i, dtype=F64), torch.tensor(var_i, dtype=F64))
        se_m = y.std() / math.sqrt(n)
        se_v = ((y - y.mean()) ** 2).std() / math.sqrt(n)
        assert abs(m - y.mean()) < 5 * se_m
        assert abs(v - y.var()) < 5 * se_v


def test_gate_variance_exceeds_exact_by_the_gate_noise():
    """Var[X m] - Var[GELU(X)] = E[X^2 Phi(X)(1 - Phi(X))] >= 0, by quadrature."""
    for mu_i, var_i in POINTS[:4]:
        _, exact = gelu_moments(torch.tensor(mu_i, dtype=F64), torch.tensor(var_i, dtype=F64))
        _, gate = gelu_moments(torch.tensor(mu_i, dtype=F64), torch.tensor(var_i, dtype=F64), "gate")
        sd = math.sqrt(var_i)
        gap = integrate.quad(lambda x: x * x * stats.norm.cdf(x) * stats.norm.sf(x) * stats.norm.pdf(x, mu_i, sd),
                             mu_i - 40 * sd, mu_i + 40 * sd, epsabs=1e-14, epsrel=1e-12, limit=500)[0]
        assert (gate - exact).item() == pytest.approx(gap, rel=1e-8) and gap > 0


def test_zero_variance_is_gelu_and_float32_agrees():
    mu = torch.linspace(-6, 6, 121, dtype=F64)
    m, v = gelu_moments(mu, torch.zeros_like(mu))
    torch.testing.assert_close(m, torch.nn.functional.gelu(mu), rtol=1e-14, atol=1e-15)
    assert v.abs().max() < 1e-13
    var = torch.rand(121, dtype=F64, generator=torch.Generator().manual_seed(1)) * 3
    m64, v64 = gelu_moments(mu, var)
    m32, v32 = gelu_moments(mu.float(), var.float())
    assert m32.dtype == torch.float32
    torch.testing.assert_close(m32.double(), m64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-5)


def test_moments_gradcheck():
    mu = torch.tensor([-1.2, 0.3, 2.0], dtype=F64, requires_grad=True)
    var = torch.tensor([0.4, 1.5, 0.2], dtype=F64, requires_grad=True)
    for variance in ("exact", "gate"):
        assert torch.autograd.gradcheck(lambda m, v: gelu_moments(m, v, variance), (mu, var))


def test_linear_moments_formula_and_monte_carlo():
    g = torch.Generator().manual_seed(2)
    mu, s = torch.randn(3, dtype=F64, generator=g), torch.rand(3, dtype=F64, generator=g)
    M, V = torch.randn(2, 3, dtype=F64, generator=g), 0.3 * torch.rand(2, 3, dtype=F64, generator=g)
    bm, bv = torch.randn(2, dtype=F64, generator=g), 0.1 * torch.rand(2, dtype=F64, generator=g)
    ym, yv = linear_moments(mu, s, M, V, bm, bv)
    for j in range(2):  # the formula, term by term
        assert ym[j].item() == pytest.approx(sum(M[j, i] * mu[i] for i in range(3)).item() + bm[j].item(), rel=1e-12)
        expect = sum(M[j, i] ** 2 * s[i] + V[j, i] * (mu[i] ** 2 + s[i]) for i in range(3)) + bv[j]
        assert yv[j].item() == pytest.approx(expect.item(), rel=1e-12)
    n = 400_000
    x = mu + s.sqrt() * torch.randn(n, 3, dtype=F64, generator=g)
    W = M + V.sqrt() * torch.randn(n, 2, 3, dtype=F64, generator=g)
    y = torch.einsum("noi,ni->no", W, x) + bm + bv.sqrt() * torch.randn(n, 2, dtype=F64, generator=g)
    assert ((y.mean(0) - ym).abs() < 5 * y.std(0) / math.sqrt(n)).all()
    assert ((y.var(0) - yv).abs() < 5 * ((y - y.mean(0)) ** 2).std(0) / math.sqrt(n)).all()


def test_module_forward_is_gelu_and_options():
    act = layerlab.build("activation", "mp_gelu", 4)
    x = torch.randn(5, 4)
    torch.testing.assert_close(act(x), torch.nn.functional.gelu(x))
    m, v = act.forward_moments(torch.zeros(4), torch.ones(4))
    assert m[0].item() == pytest.approx(1 / (2 * math.sqrt(math.pi)), rel=1e-6)  # mu=0, sigma=1: 1/(2 sqrt(pi))
    with pytest.raises(ConfigError, match="variance"):
        MPGELU(variance="taylor")
    with pytest.raises(ShapeError, match="same shape"):
        act.forward_moments(torch.zeros(4), torch.ones(3))
    with pytest.raises(ShapeError, match="weight"):
        linear_moments(torch.zeros(3), torch.ones(3), torch.zeros(2, 4), torch.zeros(2, 4))
