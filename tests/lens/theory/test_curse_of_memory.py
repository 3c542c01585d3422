"""Wang, Li & Li 2023 (arXiv:2305.19190): memory functions, diagonal linear RNNs, perturbation and stable reparameterization."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError
from layerlab.lens.theory import curse_of_memory as com

TOL = 1e-12


def conv(kernel: torch.Tensor):
    """The linear functional y_t = sum_{s<=t} kernel[s] x_{t-s} on (B, L) inputs."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        toeplitz = torch.zeros(L, L, dtype=torch.float64)
        for s in range(L):
            toeplitz += torch.diag(kernel[s].expand(L - s), -s)
        return x @ toeplitz.T
    return fn


def rnn(seed=0, m=3, parameterization="direct"):
    g = torch.Generator().manual_seed(seed)
    lam = 0.2 + 0.7 * torch.rand(m, generator=g, dtype=torch.float64)
    w = lam if parameterization == "direct" else torch.log(-torch.log(lam))
    return com.DiagonalRNN(w, torch.randn(m, generator=g, dtype=torch.float64),
                           torch.randn(m, generator=g, dtype=torch.float64), parameterization)


def test_memory_function_of_a_linear_functional_is_its_kernel():
    rho = com.target_kernel("pol", 30)
    amps = [1.0, 4.0]
    mem = com.memory_function(conv(rho), 30, amps)
    assert float((mem - rho[1:] * 4 / 5).abs().max()) < TOL  # |rho(t+1)| max |x|/(|x| + 1)
    # exponential memory decays by e^{-1} per step, polynomial memory by ratios tending to 1
    m_exp = com.memory_function(conv(com.target_kernel("exp", 30)), 30)[:12]  # beyond, y_(t+1) - y_t cancels digits
    assert float((m_exp[1:] / m_exp[:-1] - math.exp(-1)).abs().max()) < 1e-9
    ratios = mem[1:] / mem[:-1]
    assert bool((ratios[1:] > ratios[:-1]).all()) and float(ratios[-1]) > 0.95  # polynomial: ratios creep up to 1


def test_rnn_kernel_is_its_impulse_response_and_the_error_is_the_white_noise_risk():
    net = rnn()
    L = 25
    impulse = torch.zeros(1, L, dtype=torch.float64)
    impulse[0, 0] = 1.0
    kernel = com.rnn_kernel(net, L)
    assert float((net(impulse)[0] - kernel).abs().max()) < TOL
    target = com.target_kernel("exp", L)
    # E[(y_{L-1} - y_hat_{L-1})^2] for x with identity covariance: sum over the basis inputs
    basis = torch.eye(L, dtype=torch.float64)
    risk = ((conv(target)(basis) - net(basis))[:, -1] ** 2).sum()
    assert abs(float(com.kernel_error(net, target)) - float(risk.sqrt() / target.norm())) < TOL
    # one unit memory: M(t+1)/M(t) = lambda
    single = com.DiagonalRNN(torch.tensor([0.7], dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                             torch.ones(1, dtype=torch.float64))
    mem = com.memory_function(single, 20)
    assert float((mem[1:] / mem[:-1] - 0.7).abs().max()) < 1e-9


def test_a_direct_rnn_breaks_exactly_past_its_stability_boundary_and_the_reparameterized_one_never():
    net = rnn(seed=1)
    target = com.target_kernel("exp", 400)
    gap = com.stability_boundary(net)
    assert gap == pytest.approx(1 - float(net.w.max()))
    inside = com.perturbed_error(net, target, 0.9 * gap, n_random=0)
    outside = com.perturbed_error(net, target, 1.5 * gap, n_random=0)
    assert outside > 1e3 * inside
    rep = rnn(seed=1, parameterization="exp")
    assert com.stability_boundary(rep) == math.inf
    assert float(com.kernel_error(rep, target)) == pytest.approx(float(com.kernel_error(net, target)), rel=1e-10)
    assert math.isfinite(com.perturbed_error(rep, target, 2.0, n_random=4, generator=torch.Generator().manual_seed(0)))
    # the perturbation is a worst case over directions: never below the unperturbed error's neighbourhood
    assert com.perturbed_error(net, target, 0.0) == pytest.approx(float(com.kernel_error(net, target)))


def test_training_fits_exponential_memory_far_from_the_boundary_and_polynomial_memory_near_it():
    g = torch.Generator().manual_seed(0)
    exp_fit = com.train_diagonal_rnn(com.target_kernel("exp", 200), 1, "direct", steps=600, lr=0.02, generator=g)
    assert float(exp_fit.lam[0]) == pytest.approx(math.exp(-1), abs=1e-3)
    pol_target = com.target_kernel("pol", 200)
    pol_fit = com.train_diagonal_rnn(pol_target, 4, "direct", steps=600, lr=0.02, generator=g)
    assert float(com.kernel_error(pol_fit, pol_target)) < 0.1
    assert com.stability_boundary(pol_fit) < 0.05 < com.stability_boundary(exp_fit)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="'exp'"):
        com.target_kernel("sin", 10)
    with pytest.raises(ConfigError, match="parameterization"):
        com.DiagonalRNN(torch.ones(2), torch.ones(2), torch.ones(2), "softplus")
    with pytest.raises(ConfigError, match="beta"):
        com.perturbed_error(rnn(), com.target_kernel("exp", 5), -0.1)
