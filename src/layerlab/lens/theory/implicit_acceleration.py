r"""The end-to-end dynamics of a balanced deep linear network: depth as a preconditioner.

Paper: Arora, Cohen & Hazan, "On the Optimization of Deep Networks: Implicit Acceleration by
Overparameterization", 2018, arXiv:1802.06509 (Sec. 5, Theorem 1 and the discrete update that
follows it).

Setting (the paper's notation). A depth-``N`` linear network ``W_e = W_N W_{N-1} ... W_1``
trained by gradient descent on ``L^N(W_1, ..., W_N) = L^1(W_e)`` from a balanced initialization,
``W_{j+1}^T(t_0) W_{j+1}(t_0) = W_j(t_0) W_j^T(t_0)`` for ``j = 1..N-1``. Theorem 1: under gradient
flow (the paper's ``eta`` times ``d/dt``) the end-to-end matrix follows

    dW_e/dt = -eta sum_{j=1}^{N} [W_e W_e^T]^{(j-1)/N} dL^1/dW(W_e) [W_e^T W_e]^{(N-j)/N}

(the sum is symmetric under ``j -> N + 1 - j``, so the order of the two powers is immaterial), and
for gradient descent with a small step the paper takes the discrete counterpart

    W_e(t+1) = W_e(t) - eta sum_{j=1}^{N} [W_e(t) W_e(t)^T]^{(j-1)/N} dL^1/dW(W_e(t)) [W_e(t)^T W_e(t)]^{(N-j)/N},

which one gradient-descent step on the factors matches to first order in ``eta``: the step on
``W_j`` is ``-eta A_j^T G B_j^T`` with ``A_j = W_N .. W_{j+1}``, ``B_j = W_{j-1} .. W_1``, so the
product moves by ``-eta sum_j A_j A_j^T G B_j^T B_j + O(eta^2)``, and balancedness makes
``A_j A_j^T = (W_e W_e^T)^{(N-j)/N}``, ``B_j^T B_j = (W_e^T W_e)^{(j-1)/N}``. The remainder is
``O(eta^2)`` (products of two or more steps).

Fractional powers of the positive semi-definite ``W W^T`` are taken by eigendecomposition, with
eigenvalues at rounding level (``<= n eps lambda_max``) taken as exact zeros; the power 0 is the
identity (also where ``W`` is singular).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["end_to_end_step", "factor_gd_step", "preconditioned_gradient", "psd_power"]


def psd_power(a: Tensor, p: float) -> Tensor:
    """``a^p`` of a symmetric positive semi-definite matrix (``p >= 0``; ``a^0 = I``)."""
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"psd_power needs a square matrix, got shape {tuple(a.shape)}")
    if p < 0:
        raise ConfigError(f"psd_power takes powers p >= 0 (W W^T may be singular), got {p}")
    if p == 0:
        return torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    evals, evecs = torch.linalg.eigh((a + a.T) / 2)
    # eigenvalues at rounding level are zeros of a rank-deficient W W^T: a small power would blow
    # them up (1e-16 ** (1/3) ~ 5e-6), so they are set to 0
    floor = evals.abs().max() * a.shape[0] * torch.finfo(a.dtype).eps
    evals = torch.where(evals > floor, evals, torch.zeros_like(evals))
    return (evecs * evals**p) @ evecs.T


def _check_depth(depth: int) -> int:
    if int(depth) != depth or depth < 1:
        raise ConfigError(f"depth N is the number of weight matrices, an integer >= 1; got {depth!r}")
    return int(depth)


def preconditioned_gradient(w: Tensor, grad: Tensor, depth: int) -> Tensor:
    """``sum_{j=1}^{N} [W W^T]^{(j-1)/N} grad [W^T W]^{(N-j)/N}`` (``N = depth``; ``N = 1`` gives ``grad``)."""
    n = _check_depth(depth)
    if w.shape != grad.shape or w.dim() != 2:
        raise ShapeError(f"W and its gradient must be matrices of one shape; got {tuple(w.shape)} and {tuple(grad.shape)}")
    left, right = w @ w.T, w.T @ w
    return sum(psd_power(left, (j - 1) / n) @ grad @ psd_power(right, (n - j) / n) for j in range(1, n + 1))


def end_to_end_step(w: Tensor, grad: Tensor, lr: float, depth: int) -> Tensor:
    """The paper's discrete end-to-end update ``W - eta sum_j [W W^T]^{(j-1)/N} grad [W^T W]^{(N-j)/N}``."""
    return w - lr * preconditioned_gradient(w, grad, depth)


def _product(factors: Sequence[Tensor]) -> Tensor:
    out = factors[0]
    for f in factors[1:]:
        out = f @ out
    return out


def factor_gd_step(factors: Sequence[Tensor], loss_fn: Callable[[Tensor], Tensor], lr: float) -> tuple[list[Tensor], Tensor]:
    """Reference form: one gradient-descent step on the factors ``[W_1, ..., W_N]`` of
    ``loss_fn(W_N ... W_1)`` (autograd); returns the new factors and their product."""
    ws = [f.detach().clone().requires_grad_(True) for f in factors]
    grads = torch.autograd.grad(loss_fn(_product(ws)), ws)
    new = [(w - lr * g).detach() for w, g in zip(ws, grads)]
    return new, _product(new)
