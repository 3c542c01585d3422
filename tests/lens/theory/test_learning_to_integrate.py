"""Linear RNN learning to integrate (arXiv:2503.18754): the expected loss, the exact plane reduction, the 2-ODE system."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory import learning_to_integrate as li


def _net(n: int, seed: int, sigma: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    w = sigma * torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    u = torch.randn(n, generator=g, dtype=torch.float64) / math.sqrt(n)
    v = torch.randn(n, generator=g, dtype=torch.float64) / math.sqrt(n)
    return w, u, v


def test_impulse_response_is_the_recurrence_driven_by_a_unit_impulse():
    w, u, v = _net(7, 0, sigma=0.9)
    x = torch.zeros(1, 12, dtype=torch.float64)
    x[0, 0] = 1.0
    assert torch.allclose(li.rnn_outputs(w, u, v, x)[0], li.impulse_response(w, u, v, 12), rtol=0, atol=1e-14)
    assert torch.allclose(li.target_outputs(x, 0.7)[0], 0.7 ** torch.arange(12, dtype=torch.float64), atol=1e-15)


def test_population_loss_is_the_mean_sequence_loss_over_white_noise():
    w, u, v = _net(6, 1, sigma=0.8)
    t, gamma = 8, 0.9
    x = torch.randn(40_000, t, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    per_seq = li.sequence_loss(w, u, v, x, gamma)
    mean, se = per_seq.mean(), per_seq.std() / math.sqrt(x.shape[0])
    assert abs(float(mean - li.population_loss(w, u, v, t, gamma))) < 4 * float(se)


def test_gradient_descent_from_zero_recurrent_weights_stays_in_the_plane_of_u_and_v():
    # exact: the N-dimensional network is the r = 2 network (M, a, b) lifted by Q, at every step
    n, t, gamma = 20, 20, 0.9
    _, u, v = _net(n, 3)
    w = torch.zeros(n, n, dtype=torch.float64)
    m, a, b, q = li.reduce(w, u, v)
    full = li.gradient_descent(w, u, v, t=t, gamma=gamma, lr=0.01, steps=60)
    red = li.gradient_descent(m, a, b, t=t, gamma=gamma, lr=0.01, steps=60)
    for x, y in zip(li.lift(red["w"], red["u"], red["v"], q), (full["w"], full["u"], full["v"])):
        assert torch.allclose(x, y, rtol=0, atol=1e-12 * float(y.abs().max()))
    ev = torch.linalg.eigvals(full["w"]).abs().sort(descending=True).values
    assert float(ev[0]) > 0.1 and float(ev[2:].max()) < 1e-12  # at most two eigenvalues leave 0
    assert full["loss"] < 0.5 * float(li.population_loss(w, u, v, t, gamma))


def test_symmetric_two_ode_system_is_the_full_flow_in_its_subspace_and_reaches_lambda_gamma():
    n, t, gamma, lr = 9, 15, 0.8, 0.02
    nvec = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    nvec = nvec / nvec.norm()
    lam0, a0 = 0.05, 0.3
    lams, as_ = li.symmetric_flow(lam0, a0, t=t, gamma=gamma, lr=lr, steps=40)
    full = li.gradient_descent(lam0 * torch.outer(nvec, nvec), a0 * nvec, a0 * nvec, t=t, gamma=gamma, lr=lr, steps=40)
    assert torch.allclose(full["w"], lams[-1] * torch.outer(nvec, nvec), rtol=0, atol=1e-12)
    assert torch.allclose(full["u"], as_[-1] * nvec, atol=1e-12) and torch.allclose(full["v"], full["u"], atol=1e-12)
    # the explicit derivatives of the ODEs are autograd's of L(lambda, a)
    lam, a = torch.tensor(0.4, dtype=torch.float64, requires_grad=True), torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    d_lam, d_a = torch.autograd.grad(li.symmetric_loss(lam, a, t, gamma), (lam, a))
    ls, as2 = li.symmetric_flow(0.4, 0.7, t=t, gamma=gamma, lr=1e-3, steps=1)
    assert float(ls[1] - ls[0]) == pytest.approx(-1e-3 * float(d_lam), rel=1e-12)
    assert float(as2[1] - as2[0]) == pytest.approx(-1e-3 * 0.5 * float(d_a), rel=1e-12)
    # the zero-loss fixed point lambda = gamma, a^2 = 1 is where the flow ends
    lams, as_ = li.symmetric_flow(lam0, a0, t=t, gamma=gamma, lr=0.02, steps=6000)
    assert float(lams[-1]) == pytest.approx(gamma, abs=1e-4) and float(as_[-1] ** 2) == pytest.approx(1.0, abs=1e-3)
    assert float(li.symmetric_loss(gamma, 1.0, t, gamma)) == 0.0


def test_bad_input_is_named():
    w, u, v = _net(4, 0)
    with pytest.raises(ShapeError, match="W \\(N, N\\)"):
        li.impulse_response(w[:3], u, v, 5)
    with pytest.raises(ConfigError, match="gamma"):
        li.population_loss(w, u, v, 5, gamma=1.5)
    with pytest.raises(ConfigError, match="parallel"):
        li.reduce(w, u, 2 * u)
