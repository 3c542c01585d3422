"""Arora, Cohen & Hazan (2018, arXiv:1802.06509): the end-to-end update of a balanced deep linear
network, against the exact first-order term of gradient descent on its factors."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens.theory.implicit_acceleration import (end_to_end_step, factor_gd_step, preconditioned_gradient,
                                                        psd_power)
from layerlab.models.deep_linear import balanced_factors

F64 = torch.float64


def prod(ms, n):
    out = torch.eye(n, dtype=F64)  # the empty product is I_n
    for m in ms:
        out = m @ out
    return out


def test_psd_power():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 2, generator=g, dtype=F64)
    s = a @ a.T  # rank 2: singular
    half = psd_power(s, 0.5)
    assert torch.allclose(half @ half, s, atol=1e-12)
    assert torch.allclose(psd_power(s, 1 / 3) @ psd_power(s, 2 / 3), s, atol=1e-12)
    assert torch.equal(psd_power(s, 0), torch.eye(4, dtype=F64))
    with pytest.raises(ConfigError, match="p >= 0"):
        psd_power(s, -0.5)
    with pytest.raises(ShapeError, match="square"):
        psd_power(a, 0.5)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_preconditioner_is_the_first_order_term_of_factor_gradient_descent(depth):
    g = torch.Generator().manual_seed(depth)
    target = torch.randn(3, 5, generator=g, dtype=F64)
    ws = balanced_factors(target, depth, 6, generator=g)
    grad = torch.randn(3, 5, generator=g, dtype=F64)
    # sum_j A_j A_j^T G B_j^T B_j with A_j = W_N..W_{j+1}, B_j = W_{j-1}..W_1: the exact first-order move
    first = 0
    for j in range(depth):
        a = prod(ws[j + 1:], ws[j].shape[0])  # A_j = W_N .. W_{j+1}
        b = prod(ws[:j], 5)  # B_j = W_{j-1} .. W_1
        first = first + a @ a.T @ grad @ b.T @ b
    assert torch.allclose(preconditioned_gradient(target, grad, depth), first, rtol=1e-9, atol=1e-10)
    if depth == 2:  # closed form for N = 2
        w = target
        assert torch.allclose(preconditioned_gradient(w, grad, 2),
                              grad @ psd_power(w.T @ w, 0.5) + psd_power(w @ w.T, 0.5) @ grad, atol=1e-10)


def test_factor_step_matches_end_to_end_to_second_order_and_plain_gd_does_not():
    g = torch.Generator().manual_seed(7)
    target = torch.randn(2, 4, generator=g, dtype=F64)
    ws = balanced_factors(target, 3, 5, generator=g)
    x, y = torch.randn(16, 4, generator=g, dtype=F64), torch.randn(16, 2, generator=g, dtype=F64)

    def loss(w):
        return (x @ w.T - y).pow(4).sum(1).mean()

    wg = target.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(wg), wg)
    gaps, plain = [], []
    for eta in (1e-3, 5e-4, 2.5e-4):
        _, w_new = factor_gd_step(ws, loss, eta)
        gaps.append(torch.linalg.matrix_norm(w_new - end_to_end_step(target, grad, eta, 3)).item())
        plain.append(torch.linalg.matrix_norm(w_new - (target - eta * grad)).item())
    assert 3.6 < gaps[0] / gaps[1] < 4.4 and 3.6 < gaps[1] / gaps[2] < 4.4  # O(eta^2)
    assert 1.5 < plain[1] / plain[2] < 2.2 and plain[2] > 10 * gaps[2]  # plain GD on W_e is off at first order
