r"""Depth-2 random networks whose hidden parameters are drawn from a bounded domain ("bandlimited").

Paper: Li, Sonoda, Cao, Wang & Liang, "How Powerful are Shallow Neural Networks with Bandlimited
Random Weights?", 2020 (ICML 2023), arXiv:2008.08427.

Setting (the paper's, verified from its abstract). A random net freezes the hidden parameters at a
random draw and trains only the output layer by loss minimisation. When the hidden parameters are
distributed in a bounded domain the network may not reach zero approximation error: the paper
derives a lower bound by ridgelet analysis (the error is at least what the target's ridgelet
spectrum holds outside the parameter domain) and concludes that a suitable range of random weights
depends on the complexity of the target. (The bound's exact constants were not read and are not
coded here.)

What this module computes. In one dimension, hidden units ``phi_j(x) = sigma(w_j x + b_j)`` with
``w_j ~ U[-B, B]`` (the bandwidth ``B``) and ``b_j ~ U[-B r, B r]`` (``r`` the input domain's radius,
so every unit can place its transition inside ``[-r, r]``), and the network
``f(x) = (1/m) sum_j c_j phi_j(x)`` (the discretised integral representation ``S[gamma](x) =
int gamma(w, b) sigma(w x + b) dmu(w, b)``). Only ``c`` is fitted, on ``n`` grid points, by

    min_c  (1/n) ||Phi c / m - y||^2 + alpha (1/m) ||c||^2

(``alpha`` penalises ``||gamma||^2_{L^2(mu)}``; the lower bound concerns coefficient functions of
finite norm: with unbounded coefficients, bounded-weight ``tanh`` units span the polynomials, by
derivatives in ``w`` at ``w = 0``, and so approximate anything on a compact set). The solution is
``c = m (Phi^T Phi / n + alpha m I)^{-1} Phi^T y / n`` (reference form: the normal equations;
``ridge_fit`` solves the same problem as an augmented least-squares system by QR, which also serves
``alpha = 0``: the orthogonal projection onto the span of the features). ``relative_error`` is
``||f - y||^2 / ||y||^2`` on the grid.

Why the needed bandwidth grows with the frequency (the mechanism, our note): ``tanh(w x)`` has the
Fourier transform ``-i pi / (w sinh(pi xi / (2 w)))``, so a unit of slope ``|w| <= B`` holds content
at frequency ``omega`` only at the level ``~ exp(-pi omega / (2B))``; fitting ``sin(omega x)`` with a
bounded coefficient norm needs ``B`` of the order of ``omega``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["ACTIVATIONS", "bandwidth_for_error", "draw_hidden", "features", "relative_error", "ridge_fit",
           "ridge_fit_reference"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu, "cos": torch.cos,
                                                      "sigmoid": torch.sigmoid}


def draw_hidden(m: int, bandwidth: float, *, radius: float = math.pi,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``w ~ U[-B, B]`` and ``b ~ U[-B r, B r]``, ``m`` of each (float64)."""
    if m < 1 or not bandwidth > 0 or not radius > 0:
        raise ConfigError(f"draw_hidden needs m >= 1, bandwidth B > 0, radius r > 0; got m={m}, B={bandwidth}, r={radius}")
    w = (2 * torch.rand(m, generator=generator, dtype=torch.float64) - 1) * bandwidth
    b = (2 * torch.rand(m, generator=generator, dtype=torch.float64) - 1) * bandwidth * radius
    return w, b


def features(x: Tensor, w: Tensor, b: Tensor, activation: str = "tanh") -> Tensor:
    """``Phi[i, j] = sigma(w_j x_i + b_j)``: ``(n,)`` inputs -> ``(n, m)``."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if x.dim() != 1 or w.dim() != 1 or w.shape != b.shape:
        raise ShapeError(f"need x (n,), w (m,), b (m,); got {tuple(x.shape)}, {tuple(w.shape)}, {tuple(b.shape)}")
    return ACTIVATIONS[activation](x[:, None] * w[None, :] + b[None, :])


def _check_fit(phi: Tensor, y: Tensor, alpha: float) -> None:
    if phi.dim() != 2 or y.shape != phi.shape[:1]:
        raise ShapeError(f"need Phi (n, m) and y (n,); got {tuple(phi.shape)}, {tuple(y.shape)}")
    if not alpha >= 0:
        raise ConfigError(f"alpha is a ridge penalty, >= 0; got {alpha}")


def ridge_fit_reference(phi: Tensor, y: Tensor, alpha: float) -> Tensor:
    """Reference form: ``c = m (Phi^T Phi / n + alpha m I)^{-1} Phi^T y / n`` (``alpha > 0``)."""
    _check_fit(phi, y, alpha)
    n, m = phi.shape
    if alpha == 0:
        raise ConfigError("the normal equations need alpha > 0; ridge_fit handles alpha = 0 (the projection)")
    gram = phi.T @ phi / n + alpha * m * torch.eye(m, dtype=phi.dtype)
    return m * torch.linalg.solve(gram, phi.T @ y / n)


def ridge_fit(phi: Tensor, y: Tensor, alpha: float = 0.0) -> Tensor:
    """The same ``c`` by least squares on the stacked system ``[Phi / (m sqrt(n)); sqrt(alpha / m) I] c
    = [y / sqrt(n); 0]`` (QR; with ``alpha = 0`` the minimum-norm projection onto the features' span),
    or, with more units than points, its dual ``c = A^T (A A^T + (alpha/m) I)^{-1} y / sqrt(n)``,
    ``A = Phi / (m sqrt(n))`` (an ``n x n`` solve)."""
    _check_fit(phi, y, alpha)
    n, m = phi.shape
    a = phi / (m * math.sqrt(n))
    rhs = y / math.sqrt(n)
    if alpha > 0 and m > n:  # more units than points: the dual form c = A^T (A A^T + (alpha/m) I)^{-1} r
        k = a @ a.T + (alpha / m) * torch.eye(n, dtype=phi.dtype)
        return a.T @ torch.linalg.solve(k, rhs)
    if alpha > 0:
        a = torch.cat([a, math.sqrt(alpha / m) * torch.eye(m, dtype=phi.dtype)])
        rhs = torch.cat([rhs, torch.zeros(m, dtype=phi.dtype)])
        return torch.linalg.lstsq(a, rhs[:, None]).solution[:, 0]
    return torch.linalg.lstsq(a, rhs[:, None], driver="gelsd").solution[:, 0]


def relative_error(phi: Tensor, y: Tensor, c: Tensor) -> float:
    """``||Phi c / m - y||^2 / ||y||^2``."""
    return float((phi @ c / phi.shape[1] - y).square().sum() / y.square().sum())


def bandwidth_for_error(error_at: Callable[[float], float], target: float, lo: float, hi: float,
                        iterations: int = 12) -> float:
    """The bandwidth ``B`` where ``error_at(B)`` crosses ``target``, by bisection on ``log B`` between
    ``lo`` (error above ``target``) and ``hi`` (below); ``nan`` when the bracket does not hold."""
    if not 0 < lo < hi:
        raise ConfigError(f"need 0 < lo < hi; got lo={lo}, hi={hi}")
    if not (error_at(lo) > target >= error_at(hi)):
        return math.nan
    a, b = math.log(lo), math.log(hi)
    for _ in range(iterations):
        mid = 0.5 * (a + b)
        if error_at(math.exp(mid)) > target:
            a = mid
        else:
            b = mid
    return math.exp(0.5 * (a + b))
