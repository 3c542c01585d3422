"""Wu & Su 2023 (arXiv:2305.17490): tr H and ||H||_F at a global minimum as parameter norms, against full Hessians."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from layerlab.errors import ShapeError
from layerlab.lens.theory import TwoLayerReLU
from layerlab.lens.theory.stability_norms import (diagonal_linear_l1, diagonal_linear_trace,
                                                  hessian_frobenius_at_minimum, hessian_trace_at_minimum,
                                                  two_layer_relu_path_norm, two_layer_relu_trace)


def _full_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Hessian of (1/2n) sum ||f(x_i) - y_i||^2 over all parameters, flattened (exact, by torch.func)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        out = functional_call(model, params, (x,))
        return 0.5 * (out - y).square().sum() / x.shape[0]

    return hessian(loss)(flat0)


def _relu_net(seed: int, d: int = 3, m: int = 6):
    return TwoLayerReLU(d, m, torch.Generator().manual_seed(seed), bias=True, dtype=torch.float64)


def test_two_layer_relu_trace_and_frobenius_at_an_exact_minimum():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = _relu_net(1)
    with torch.no_grad():
        y = net(x)  # teacher = student: every residual is 0, a global minimum
    h = _full_hessian(net, x, y)
    closed = two_layer_relu_trace(net.a, net.w, x, net.b, scale=1 / math.sqrt(6))
    assert float(torch.trace(h)) == pytest.approx(float(closed), rel=1e-10)
    assert float(hessian_trace_at_minimum(net, x)) == pytest.approx(float(closed), rel=1e-10)
    assert float(hessian_frobenius_at_minimum(net, x)) == pytest.approx(float(torch.linalg.matrix_norm(h)), rel=1e-10)
    # away from the minimum the residual term r_i d^2 f_i enters: ReLU's d^2 f has a zero diagonal (only
    # a_j-w_j and a_j-b_j cross terms), so the trace is unchanged but the Frobenius norm is not
    h_off = _full_hessian(net, x, y + 1.0)
    assert float(torch.trace(h_off)) == pytest.approx(float(closed), rel=1e-10)
    assert abs(float(torch.linalg.matrix_norm(h_off)) / float(torch.linalg.matrix_norm(h)) - 1) > 1e-3


def test_am_gm_path_norm_bound_and_its_equality_case():
    g = torch.Generator().manual_seed(2)
    for seed in range(5):
        net = _relu_net(10 + seed, d=4, m=8)
        x = torch.randn(7, 4, generator=g, dtype=torch.float64)
        tr = two_layer_relu_trace(net.a, net.w, x, net.b)
        assert float(tr) >= 2 * float(two_layer_relu_path_norm(net.a, net.w, x, net.b)) - 1e-12
    # one input, no biases, a_j = relu(w_j . x) / ||x||: every active unit balanced -> equality
    x = torch.randn(1, 4, generator=g, dtype=torch.float64)
    w = torch.randn(8, 4, generator=g, dtype=torch.float64)
    a = torch.relu(x @ w.T)[0] / x.norm()
    assert float(two_layer_relu_trace(a, w, x)) == pytest.approx(2 * float(two_layer_relu_path_norm(a, w, x)),
                                                               rel=1e-12)


class _Diagonal(nn.Module):
    def __init__(self, u: torch.Tensor, v: torch.Tensor) -> None:
        super().__init__()
        self.u, self.v = nn.Parameter(u.clone()), nn.Parameter(v.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.u * self.v)).unsqueeze(-1)


def test_diagonal_linear_network_trace_is_the_weighted_parameter_norm():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    u, v = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    net = _Diagonal(u, v)
    with torch.no_grad():
        y = net(x)
    h = _full_hessian(net, x, y)
    assert float(torch.trace(h)) == pytest.approx(float(diagonal_linear_trace(u, v, x)), rel=1e-12)
    assert float(diagonal_linear_trace(u, v, x)) >= 2 * float(diagonal_linear_l1(u, v, x))
    # whitened columns (unit second moments) and balanced |u| = |v|: tr H = ||u||^2 + ||v||^2 = 2 ||u * v||_1
    xw = x / x.square().mean(0).sqrt()
    s = torch.sign(torch.randn(5, generator=g, dtype=torch.float64))
    assert float(diagonal_linear_trace(u, s * u, xw)) == pytest.approx(2 * float(u.square().sum()), rel=1e-12)
    assert float(diagonal_linear_l1(u, s * u, xw)) == pytest.approx(float(u.square().sum()), rel=1e-12)


def test_multi_output_linear_model():
    # a linear model's loss Hessian is its Gauss-Newton part everywhere: tr H = tr K / n, ||H||_F = ||K||_F / n
    net = nn.Linear(3, 2, dtype=torch.float64)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    h = _full_hessian(net, x, torch.zeros(6, 2, dtype=torch.float64))
    assert float(hessian_trace_at_minimum(net, x)) == pytest.approx(float(torch.trace(h)), rel=1e-12)
    assert float(hessian_frobenius_at_minimum(net, x)) == pytest.approx(float(torch.linalg.matrix_norm(h)), rel=1e-12)


def test_bad_shapes_are_errors():
    with pytest.raises(ShapeError):
        two_layer_relu_trace(torch.ones(3), torch.ones(4, 2), torch.ones(5, 2))
    with pytest.raises(ShapeError):
        diagonal_linear_trace(torch.ones(3), torch.ones(2), torch.ones(5, 3))
