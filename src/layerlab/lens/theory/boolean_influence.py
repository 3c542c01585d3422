r"""Boolean Fourier analysis, influence, and the generalization error under a canonical holdout.

Paper: Abbe, Bengio, Cornacchia, Kleinberg, Lotfi, Raghu & Zhang, "Learning to Reason with Neural
Networks: Generalization, Unseen Data and Boolean Measures", 2022, arXiv:2205.13647: when the
training data freeze one feature (``x_k = 1``, the canonical holdout), the generalization error
of gradient descent under quadratic loss is characterized by the Boolean influence of ``k``,
because GD is biased toward low-degree representations (shown for linear models, supported by
experiments on MLPs and Transformers).

Notation. ``f: {-1, 1}^d -> R`` has the Fourier-Walsh expansion ``f = sum_S f^(S) chi_S`` with
``chi_S(x) = prod_{i in S} x_i`` and ``f^(S) = E_x[f(x) chi_S(x)]`` (uniform ``x``). The influence
of coordinate ``k`` is ``Inf_k(f) = sum_{S contains k} f^(S)^2`` (for ``f`` into ``{-1, 1}``:
``Pr[f(x) != f(x with x_k flipped)]``).

Canonical holdout (our derivation of the constant). Trained on ``x_k = 1`` only, the
minimum-degree interpolator is ``g(x) = f(x with x_k = 1) = sum_S f^(S) chi_{S \ {k}}(x)``. On the
unseen half (``x_k = -1``) ``f - g = -2 sum_{S contains k} f^(S) chi_{S \ {k}}``, whose mean
square is ``4 Inf_k(f)``; over the whole cube the squared error is therefore ``2 Inf_k(f)``.

Points of the cube are ordered by the integer ``i`` whose bit ``j`` gives ``x_j = 1 - 2 bit_j``;
coefficients are indexed by the integer whose bits mark ``S``. ``fourier_coefficients`` uses the
fast Walsh-Hadamard transform (``d 2^d`` operations); ``fourier_coefficients_reference`` the
definition (``4^d``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["canonical_holdout_error", "cube", "fourier_coefficients", "fourier_coefficients_reference", "influence"]


def cube(d: int) -> Tensor:
    """All ``2^d`` points of ``{-1, 1}^d`` as a float64 ``(2^d, d)`` tensor (bit ``j`` of the row: ``x_j = 1 - 2 bit``)."""
    if d < 1 or d > 24:
        raise ConfigError(f"cube dimension d must be in 1..24 (2^d points), got {d}")
    i = torch.arange(2**d)
    bits = (i[:, None] >> torch.arange(d)) & 1
    return (1 - 2 * bits).double()


def _check_values(values: Tensor) -> int:
    n = values.shape[-1]
    d = n.bit_length() - 1
    if values.dim() != 1 or n < 2 or 2**d != n:
        raise ShapeError(f"values must be f on all 2^d points of the cube, a 1-d tensor of length 2^d; got {tuple(values.shape)}")
    return d


def fourier_coefficients(values: Tensor) -> Tensor:
    """``f^(S)`` for every ``S`` (indexed by bitmask) by the fast Walsh-Hadamard transform."""
    d = _check_values(values)
    a = values.double().clone()
    h = 1
    while h < a.numel():
        a = a.reshape(-1, 2, h)
        a = torch.stack([a[:, 0] + a[:, 1], a[:, 0] - a[:, 1]], 1).reshape(-1)
        h *= 2
    return a / 2**d


def fourier_coefficients_reference(values: Tensor) -> Tensor:
    """``f^(S) = 2^-d sum_x f(x) chi_S(x)``, from the definition."""
    d = _check_values(values)
    x = cube(d)
    masks = ((torch.arange(2**d)[:, None] >> torch.arange(d)) & 1).bool()  # (S, d)
    chi = torch.stack([torch.where(m, x, torch.ones_like(x)).prod(1) for m in masks])  # (S, x)
    return chi @ values.double() / 2**d


def influence(coefficients: Tensor, k: int) -> float:
    """``Inf_k(f) = sum_{S contains k} f^(S)^2``."""
    d = _check_values(coefficients)
    if not 0 <= k < d:
        raise ConfigError(f"coordinate k must be in 0..{d - 1}, got {k}")
    has_k = ((torch.arange(2**d) >> k) & 1).bool()
    return float(coefficients[has_k].square().sum())


def canonical_holdout_error(coefficients: Tensor, k: int) -> float:
    """Mean squared error over the cube of the min-degree interpolator trained on ``x_k = 1``: ``2 Inf_k(f)``."""
    return 2 * influence(coefficients, k)
