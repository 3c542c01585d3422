r"""Iterative Newton and gradient descent for in-context linear regression, and a linear-attention
stack that runs Newton's iterations exactly.

Paper: Fu, Chen, Jia & Sharan, "Transformers Learn Higher-Order Optimization Methods for In-Context
Learning: A Study with Linear Models", 2023, arXiv:2310.17086 (Sec. 3: the algorithms; Sec. 5:
Transformers can implement k iterations of Newton's method with O(k) layers).

Setting. A prompt holds ``n`` examples ``X = [x_1 .. x_n]^T`` (n x d), labels ``y`` (n,) and a query
``x_q``; ``S = X^T X``. Every predictor below is ``y_hat = x_q^T w_hat`` with ``w_hat`` from the
context only; the ordinary least squares solution is ``w_OLS = S^{-1} X^T y`` (``S`` invertible).

Iterative Newton (Newton-Schulz iteration for ``S^{-1}``, the paper's Eq. in Sec. 3)::

    M_0 = alpha S,    M_{k+1} = 2 M_k - M_k S M_k,    w_hat_k = M_k X^T y.

Every ``M_k`` is a polynomial in ``S``, so ``I - M_{k+1} S = (I - M_k S)^2`` and, exactly,

    I - M_k S = (I - alpha S^2)^{2^k},    w_hat_k - w_OLS = -(I - alpha S^2)^{2^k} w_OLS

(:func:`newton_error_closed_form`): along eigenvector ``i`` of ``S`` the error factor is
``(1 - alpha lambda_i^2)^{2^k}``, a quadratic (doubly exponential) convergence once
``|1 - alpha lambda_i^2| < 1`` for all ``i``. ``alpha``: the authors' released code
(``LeastSquaresModelNewtonMethod``) takes ``alpha = 2 / ||S S^T||`` with ``torch.linalg.norm``'s
default, the Frobenius norm, the default here; with the spectral norm the top eigendirection would
sit at ``1 - alpha lambda_max^2 = -1`` and never converge (tested). Steps to a relative error
``eps``: ``k >= log2(log eps / log rho_N)``, ``rho_N = max_i |1 - alpha lambda_i^2|``, which grows
like ``log2(kappa^2)`` with the condition number ``kappa`` of ``S``.

Gradient descent on ``(1/2) ||X w - y||^2`` from ``w_0 = 0`` with step ``eta``::

    w_{k+1} = w_k - eta (S w_k - X^T y),    w_k - w_OLS = -(I - eta S)^k w_OLS

(:func:`gd_error_closed_form`): linear convergence with ``rho_GD = max_i |1 - eta lambda_i|``, at best
``(kappa - 1)/(kappa + 1)`` (``eta = 2/(lambda_max + lambda_min)``): ``k ~ kappa log(1/eps) / 2`` steps.

Newton by linear self-attention (:func:`newton_attention_stack`). Each token carries
``e_j = [x_j, y_j, t_j, o_j]``; ``t_j = M_k x_j`` is the running Newton state. Layers are linear
self-attention ``e_i <- e_i + W^PV sum_{j in context} e_j (e_j^T W^KQ e_i)`` (keys and values from the
``n`` context tokens), plus a linear map on ``t`` (the layer's MLP, here linear):

- layer 0: ``W^KQ`` pairs ``x_j`` with ``x_i``, ``W^PV`` writes ``alpha x_j`` into ``t``:
  ``t_i = alpha sum_j x_j x_j^T x_i = M_0 x_i``;
- each Newton layer: ``t <- 2 t`` (linear map), then ``W^KQ`` pairs ``x_j`` with ``t_i`` and ``W^PV``
  writes ``-t_j / 4``: ``t_i <- 2 t_i - sum_j t_j x_j^T t_i = 2 M_k x_i - M_k S M_k x_i = M_{k+1} x_i``
  (``M_k S M_k x_i = sum_j (M_k x_j)(x_j^T M_k x_i)``);
- readout: ``W^KQ`` pairs ``t_j`` with ``x_q``, ``W^PV`` writes ``y_j`` into ``o``:
  ``o_q = sum_j y_j t_j^T x_q = x_q^T M_k X^T y = y_hat_k``.

So ``k`` Newton steps take ``k + 2`` attention layers: O(k), as the paper's theorem states. ``alpha``
enters as a constant of layer 0 (computing it inside the network, which the paper's construction
does with extra layers, is not built here). Verified against the paper: the Newton and GD
iterations (abstract, Sec. 3) and the O(k)-layer statement (abstract); the layer-by-layer
construction above is ours, not the paper's (which uses ReLU attention and MLPs).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["gd_error_closed_form", "gd_iterates", "newton_alpha", "newton_attention_stack", "newton_error_closed_form",
           "newton_iterates", "steps_to_tolerance", "ols"]


def _gram(x: Tensor) -> Tensor:
    if x.dim() < 2:
        raise ShapeError(f"X must be (..., n, d); got {tuple(x.shape)}")
    return x.transpose(-2, -1) @ x


def newton_alpha(s: Tensor, norm: str = "fro") -> Tensor:
    """``alpha = 2 / ||S S^T||`` (``norm="fro"``: the released code's Frobenius norm; ``"2"``: spectral), (...,)."""
    if norm not in ("fro", "2"):
        raise ConfigError(f"newton_alpha: norm is 'fro' (the released code) or '2' (spectral); got {norm!r}")
    ss = s @ s.transpose(-2, -1)
    return 2.0 / torch.linalg.matrix_norm(ss, ord="fro" if norm == "fro" else 2)


def newton_iterates(x: Tensor, k: int, alpha: Tensor | float | None = None) -> list[Tensor]:
    """``[M_0, ..., M_k]`` for ``S = X^T X`` (``x`` (..., n, d)): ``M_0 = alpha S``, ``M_{j+1} = 2 M_j - M_j S M_j``."""
    if int(k) != k or k < 0:
        raise ConfigError(f"newton_iterates: k is a number of steps >= 0; got {k!r}")
    s = _gram(x)
    a = newton_alpha(s) if alpha is None else torch.as_tensor(alpha, dtype=s.dtype)
    ms = [a[..., None, None] * s if a.dim() else a * s]
    for _ in range(int(k)):
        m = ms[-1]
        ms.append(2 * m - m @ s @ m)
    return ms


def gd_iterates(x: Tensor, y: Tensor, k: int, eta: Tensor | float) -> list[Tensor]:
    """``[w_0 = 0, ..., w_k]`` of ``w <- w - eta (S w - X^T y)``; ``x`` (..., n, d), ``y`` (..., n)."""
    if int(k) != k or k < 0:
        raise ConfigError(f"gd_iterates: k is a number of steps >= 0; got {k!r}")
    s, xty = _gram(x), (x.transpose(-2, -1) @ y[..., None])[..., 0]
    eta = torch.as_tensor(eta, dtype=x.dtype)
    eta = eta[..., None] if eta.dim() else eta
    ws = [torch.zeros_like(xty)]
    for _ in range(int(k)):
        w = ws[-1]
        ws.append(w - eta * ((s @ w[..., None])[..., 0] - xty))
    return ws


def ols(x: Tensor, y: Tensor) -> Tensor:
    """``w_OLS = S^{-1} X^T y`` (S invertible: n >= d and X of full column rank)."""
    return torch.linalg.solve(_gram(x), (x.transpose(-2, -1) @ y[..., None])[..., 0])


def _spectral_power(s: Tensor, f: Tensor, w: Tensor) -> Tensor:
    """``U diag(f) U^T w`` with ``S = U diag(lambda) U^T``; ``f`` (..., d) per eigenvalue."""
    _, u = torch.linalg.eigh(s)
    return (u @ (f * (u.transpose(-2, -1) @ w[..., None])[..., 0])[..., None])[..., 0]


def newton_error_closed_form(x: Tensor, y: Tensor, k: int, alpha: Tensor | float | None = None) -> Tensor:
    """``w_hat_k - w_OLS = -(I - alpha S^2)^{2^k} w_OLS`` from the eigenvalues of ``S``, (..., d)."""
    s = _gram(x)
    a = newton_alpha(s) if alpha is None else torch.as_tensor(alpha, dtype=s.dtype)
    lam = torch.linalg.eigvalsh(s)
    factor = (1 - (a[..., None] if a.dim() else a) * lam ** 2) ** (2 ** int(k))
    return -_spectral_power(s, factor, ols(x, y))


def gd_error_closed_form(x: Tensor, y: Tensor, k: int, eta: Tensor | float) -> Tensor:
    """``w_k - w_OLS = -(I - eta S)^k w_OLS`` from the eigenvalues of ``S``, (..., d)."""
    s = _gram(x)
    lam = torch.linalg.eigvalsh(s)
    eta = torch.as_tensor(eta, dtype=s.dtype)
    factor = (1 - (eta[..., None] if eta.dim() else eta) * lam) ** int(k)
    return -_spectral_power(s, factor, ols(x, y))


def steps_to_tolerance(rho: Tensor | float, eps: float, *, newton: bool) -> Tensor:
    """Steps after which the worst error factor is ``<= eps``: Newton ``ceil(log2(log eps / log rho))``
    (``rho^{2^k} <= eps``), GD ``ceil(log eps / log rho)`` (``rho^k <= eps``); ``rho`` in (0, 1)."""
    rho = torch.as_tensor(rho, dtype=torch.float64)
    if bool(((rho <= 0) | (rho >= 1)).any()) or not 0 < eps < 1:
        raise ConfigError("steps_to_tolerance: need 0 < rho < 1 (a convergent iteration) and 0 < eps < 1")
    ratio = math.log(eps) / torch.log(rho)
    return torch.ceil(torch.log2(ratio)).clamp(min=0) if newton else torch.ceil(ratio)


def _lsa(e: Tensor, ctx: int, w_kq: Tensor, w_pv: Tensor) -> Tensor:
    """``e_i + W^PV sum_{j < ctx} e_j (e_j^T W^KQ e_i)`` for every token ``i`` (keys/values: the context)."""
    c = e[..., :ctx, :]
    scores = c @ w_kq @ e.transpose(-2, -1)  # (..., j, i): e_j^T W^KQ e_i
    return e + (scores.transpose(-2, -1) @ c) @ w_pv.T


def newton_attention_stack(x: Tensor, y: Tensor, x_query: Tensor, k: int,
                           alpha: Tensor | float | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """Run the ``k + 2``-layer linear-attention construction of the module docstring.

    ``x`` (..., n, d), ``y`` (..., n), ``x_query`` (..., d). Returns ``(t, y_hat)``: ``t[j]`` the
    context tokens' Newton state after ``j`` Newton layers (..., n, d), equal to ``M_j x_i``, and
    ``y_hat[j]`` the readout after them (...,), equal to ``x_q^T M_j X^T y``."""
    if y.shape != x.shape[:-1] or x_query.shape != x.shape[:-2] + x.shape[-1:]:
        raise ShapeError(f"newton_attention_stack: need x (..., n, d), y (..., n), x_query (..., d); got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(x_query.shape)}")
    n, d = x.shape[-2:]
    if alpha is None:
        alpha = newton_alpha(_gram(x))
    alpha = torch.as_tensor(alpha, dtype=x.dtype)
    width = 2 * d + 2  # [x, y, t, o]
    X, Y, T, O = slice(0, d), d, slice(d + 1, 2 * d + 1), 2 * d + 1
    f = {"dtype": x.dtype, "device": x.device}
    tokens = torch.cat((x, x_query[..., None, :]), dim=-2)
    e = torch.zeros(*tokens.shape[:-1], width, **f)
    e[..., X] = tokens
    e[..., :n, Y] = y
    eye = torch.eye(d, **f)

    init_kq, init_pv = torch.zeros(width, width, **f), torch.zeros(width, width, **f)
    init_kq[X, X] = eye
    init_pv[T, X] = eye  # alpha is applied below (a per-prompt constant of the layer)
    step_kq, step_pv = torch.zeros(width, width, **f), torch.zeros(width, width, **f)
    step_kq[X, T] = eye  # e_j^T W^KQ e_i = x_j^T t_i
    step_pv[T, T] = -0.25 * eye
    read_kq, read_pv = torch.zeros(width, width, **f), torch.zeros(width, width, **f)
    read_kq[T, X] = eye  # t_j^T x_q
    read_pv[O, Y] = 1.0

    e = _lsa(e, n, init_kq, init_pv)
    e[..., T] = (alpha[..., None, None] if alpha.dim() else alpha) * e[..., T]
    ts, outs = [], []
    for j in range(int(k) + 1):
        if j > 0:
            e = e.clone()
            e[..., T] = 2 * e[..., T]  # the layer's linear map
            e = _lsa(e, n, step_kq, step_pv)
        ts.append(e[..., :n, T])
        outs.append(_lsa(e, n, read_kq, read_pv)[..., n, O])
    return ts, outs
