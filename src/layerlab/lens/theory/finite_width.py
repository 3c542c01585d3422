r"""Finite-width non-Gaussianity of preactivations at initialization, at criticality.

Book: Roberts, Yaida & Hanin, "The Principles of Deep Learning Theory", 2021, arXiv:2106.10165
(Ch. 3, deep linear networks; Ch. 5.3-5.5, the scale-invariant universality class and its
criticality; the normalized four-point vertex ``V^{(l)} / (n (K^{(l)})^2)``).

Setting (the book's notation). An MLP without biases, ``z^{(1)}_i = sum_j W^{(1)}_{ij} x_j``,
``z^{(l+1)}_i = sum_j W^{(l+1)}_{ij} sigma(z^{(l)}_j)``, with i.i.d. Gaussian weights of variance
``C_W / n_{l}`` (``n_0`` for the first layer), one fixed input ``x``, widths ``n_1 = ... = n``.
A scale-invariant activation is ``sigma(z) = a_+ z`` for ``z >= 0`` and ``a_- z`` for ``z < 0``
(linear: ``a_+ = a_- = 1``; ReLU: ``1, 0``; leaky ReLU with slope ``s``: ``1, s``), with the
book's moments

    A_2 = (a_+^2 + a_-^2) / 2,    A_4 = (a_+^4 + a_-^4) / 2,

criticality at ``C_W = 1 / A_2`` (``C_b = 0``), and the book's result that the normalized
four-point vertex grows linearly in depth,

    V^{(l)} / (n (K^{(l)})^2) = (3 A_4 / A_2^2 - 1) (l - 1) / n + O(1/n^2),

i.e. the excess kurtosis ``E[z^4] / E[z^2]^2 - 3 = 3 V / (n K^2)`` of one preactivation grows as
``3 c (l - 1) / n`` with ``c = 3 A_4 / A_2^2 - 1`` (``c = 2`` deep linear, Ch. 3; ``c = 5`` ReLU).

Exact form for one input (derivation, ours; it is the book's recursion without truncation).
Given layer ``l``, the ``z^{(l+1)}_i`` are i.i.d. Gaussian with the random variance
``G_{l+1} = (C_W / n) sum_j sigma(z^{(l)}_j)^2``; given ``G_l`` the ``z^{(l)}_j`` are i.i.d.
``N(0, G_l)``, and ``E[sigma(z)^2] = A_2 G``, ``E[sigma(z)^4] = 3 A_4 G^2``. Hence at criticality
``E[G_{l+1} | G_l] = G_l`` and

    E[G_{l+1}^2 | G_l] = (C_W / n)^2 [n 3 A_4 + n (n - 1) A_2^2] G_l^2 = (1 + c / n) G_l^2,

while ``E[z^4] = 3 E[G^2]``, ``E[z^2] = E[G]`` and ``G_1`` is deterministic (``z^{(1)}`` is exactly
Gaussian). So, for every width and depth (not only to leading order in ``1/n``),

    kappa^{(l)} = E[z^4] / E[z^2]^2 - 3 = 3 [ prod_{k=1}^{l-1} (1 + c / n_k) - 1 ]
                                        = 3 [ (1 + c / n)^{l-1} - 1 ]   (equal widths),

which expands to the book's ``3 c (l - 1) / n`` at first order. ``excess_kurtosis`` is the
closed power; ``excess_kurtosis_widths`` the product over layers (its reference form, for unequal
widths); ``leading_order_kurtosis`` the book's first-order term.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...errors import ConfigError, unknown_name

__all__ = ["ACTIVATIONS", "activation_slopes", "critical_weight_variance", "excess_kurtosis",
           "excess_kurtosis_widths", "kurtosis_coefficient", "leading_order_kurtosis",
           "scale_invariant_moments"]

ACTIVATIONS = ("linear", "relu", "leaky_relu")


def activation_slopes(activation: str, negative_slope: float = 0.01) -> tuple[float, float]:
    """``(a_+, a_-)`` of a scale-invariant activation: linear ``(1, 1)``, relu ``(1, 0)``,
    leaky_relu ``(1, negative_slope)``."""
    if activation == "linear":
        return 1.0, 1.0
    if activation == "relu":
        return 1.0, 0.0
    if activation == "leaky_relu":
        return 1.0, float(negative_slope)
    raise unknown_name("scale-invariant activation", activation, ACTIVATIONS)


def scale_invariant_moments(activation: str, negative_slope: float = 0.01) -> tuple[float, float]:
    """The book's ``A_2 = (a_+^2 + a_-^2)/2`` and ``A_4 = (a_+^4 + a_-^4)/2``."""
    ap, am = activation_slopes(activation, negative_slope)
    return (ap**2 + am**2) / 2, (ap**4 + am**4) / 2


def critical_weight_variance(activation: str, negative_slope: float = 0.01) -> float:
    """``C_W = 1 / A_2`` (with ``C_b = 0``): 1 for linear, 2 for ReLU."""
    a2, _ = scale_invariant_moments(activation, negative_slope)
    return 1.0 / a2


def kurtosis_coefficient(activation: str, negative_slope: float = 0.01) -> float:
    """``c = 3 A_4 / A_2^2 - 1``: 2 for deep linear networks, 5 for ReLU."""
    a2, a4 = scale_invariant_moments(activation, negative_slope)
    return 3 * a4 / a2**2 - 1


def _check_width(width: float) -> None:
    if not width >= 1:
        raise ConfigError(f"width must be >= 1 (the number of neurons of a hidden layer); got {width}")


def _layers(layer: Tensor | Sequence[int] | int) -> Tensor:
    ell = torch.as_tensor(layer, dtype=torch.float64)
    if not bool((ell >= 1).all()) or not bool((ell == ell.round()).all()):
        raise ConfigError(f"layer indices l are integers >= 1 (z^(1) = W^(1) x is the first); got {layer!r}")
    return ell


def excess_kurtosis(layer: Tensor | Sequence[int] | int, width: float, activation: str = "relu",
                    negative_slope: float = 0.01) -> Tensor:
    """``kappa^{(l)} = 3 [(1 + c/n)^{l-1} - 1]``: excess kurtosis of one preactivation of layer
    ``l`` of a critical, bias-free MLP of hidden width ``n`` on one input (exact; module docstring)."""
    _check_width(width)
    ell = _layers(layer)
    c = kurtosis_coefficient(activation, negative_slope)
    return 3 * torch.expm1((ell - 1) * torch.log1p(torch.tensor(c / width, dtype=torch.float64)))


def excess_kurtosis_widths(widths: Sequence[int], activation: str = "relu",
                           negative_slope: float = 0.01) -> Tensor:
    """Reference form for hidden widths ``n_1, ..., n_{L-1}``: ``kappa^{(l)} = 3 [prod_{k<l}
    (1 + c/n_k) - 1]`` for ``l = 1..L`` (``L = len(widths) + 1``), by the layer recursion of
    ``E[G^2] / E[G]^2``."""
    for n in widths:
        _check_width(n)
    c = kurtosis_coefficient(activation, negative_slope)
    ratio, out = 1.0, [0.0]  # E[G_l^2] / E[G_l]^2, layer 1 exactly Gaussian
    for n in widths:
        ratio = ratio * (1 + c / n)
        out.append(3 * (ratio - 1))
    return torch.tensor(out, dtype=torch.float64)


def leading_order_kurtosis(layer: Tensor | Sequence[int] | int, width: float, activation: str = "relu",
                           negative_slope: float = 0.01) -> Tensor:
    """The book's first-order term ``3 c (l - 1) / n`` (``3 V^{(l)} / (n K^2)`` at criticality)."""
    _check_width(width)
    return 3 * kurtosis_coefficient(activation, negative_slope) * (_layers(layer) - 1) / width
