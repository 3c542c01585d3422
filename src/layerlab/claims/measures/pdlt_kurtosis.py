r"""The depth growth of preactivation kurtosis at criticality, measured over random networks.

Book: Roberts, Yaida & Hanin, "The Principles of Deep Learning Theory", 2021, arXiv:2106.10165
(Ch. 3 and 5): at criticality the normalized four-point vertex of a bias-free MLP of width ``n``
grows with depth; for one input its excess kurtosis is exactly
``kappa^{(l)} = 3 [(1 + c/n)^{l-1} - 1]`` with ``c = 3 A_4 / A_2^2 - 1`` (2 deep linear, 5 ReLU),
whose first order is the book's ``3 c (l - 1) / n`` (``lens.theory.finite_width``).

The measurement draws ``networks`` independent random networks (Gaussian weights of variance
``C_W / fan_in`` at ``C_W = 1 / A_2``, no biases, hidden width ``width``, ``depth`` layers, a
fixed input of ones in ``in_features`` dimensions), propagates the input, and estimates per layer
``kappa_hat = mean(z^4) / mean(z^2)^2 - 3`` over all networks and neurons. Its standard error
is the delta-method error of that ratio with the network as the independent unit (neurons of one
network share their variance ``G``, so they are not independent). ``error`` is the relative gap
``|kappa_hat - kappa| / kappa`` at the last layer; ``z_max`` the largest ``|kappa_hat - kappa| / se``
over layers 2..depth; ``leading_order_error`` the gap of the book's first-order term from the
exact value (what the tolerance must resolve). Weights are drawn in float32 (moments accumulated
in float64): float32 rounding is far below the Monte Carlo error.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import finite_width
from ...registry import Paper
from . import register_measure

_CHUNK = 10_000  # networks per batch of matrix products (bounds memory: chunk x width^2 floats)


def sample_kurtosis(networks: int, width: int, depth: int, activation: str, generator: torch.Generator, *,
                    in_features: int = 8, negative_slope: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo ``kappa_hat`` and its standard error, per layer ``1..depth`` (float64 tensors)."""
    cw = finite_width.critical_weight_variance(activation, negative_slope)
    slope_neg = finite_width.activation_slopes(activation, negative_slope)[1]
    fourth, second = [], []
    for start in range(0, networks, _CHUNK):
        b = min(_CHUNK, networks - start)
        x = torch.ones(b, in_features, 1)
        z = torch.randn(b, width, in_features, generator=generator).mul_(math.sqrt(cw / in_features)) @ x
        m4, m2 = [], []
        for layer in range(1, depth + 1):
            if layer > 1:
                h = torch.where(z >= 0, z, slope_neg * z)  # sigma(z) = a_+ z or a_- z, a_+ = 1
                z = torch.randn(b, width, width, generator=generator).mul_(math.sqrt(cw / width)) @ h
            zz = z.squeeze(-1).double() ** 2
            m4.append((zz**2).mean(1))
            m2.append(zz.mean(1))
        fourth.append(torch.stack(m4, 1))
        second.append(torch.stack(m2, 1))
    a, c = torch.cat(fourth), torch.cat(second)  # (networks, depth): per-network neuron averages
    am, cm = a.mean(0), c.mean(0)
    kappa = am / cm**2 - 3
    influence = a / cm**2 - 2 * am * c / cm**3  # delta method for mean(a) / mean(c)^2
    se = influence.std(0) / math.sqrt(a.shape[0])
    return kappa, se


@register_measure("pdlt_kurtosis", metric="error",
                  paper=Paper("The Principles of Deep Learning Theory", 2021, "2106.10165"))
def pdlt_kurtosis(seed: int, *, activation: str = "relu", width: int = 32, depth: int = 6,
                  networks: int = 50_000, in_features: int = 8, negative_slope: float = 0.01) -> dict[str, float]:
    if width < 1 or depth < 2 or networks < 100 or in_features < 1:
        raise ConfigError(f"pdlt_kurtosis: need width >= 1, depth >= 2, networks >= 100, in_features >= 1; "
                          f"got width={width}, depth={depth}, networks={networks}, in_features={in_features}")
    finite_width.activation_slopes(activation, negative_slope)  # unknown activation -> clear error
    g = torch.Generator().manual_seed(seed)
    kappa_hat, se = sample_kurtosis(networks, width, depth, activation, g, in_features=in_features,
                                    negative_slope=negative_slope)
    layers = torch.arange(1, depth + 1)
    exact = finite_width.excess_kurtosis(layers, width, activation, negative_slope)
    first = finite_width.leading_order_kurtosis(layers, width, activation, negative_slope)
    last = depth - 1
    z = ((kappa_hat - exact) / se)[1:]
    return {"error": abs(float(kappa_hat[last] - exact[last])) / float(exact[last]),
            "kurtosis": float(kappa_hat[last]), "predicted": float(exact[last]),
            "relative_se": float(se[last] / exact[last]), "z_max": float(z.abs().max()),
            "first_layer_kurtosis": float(kappa_hat[0]),
            "leading_order_error": abs(float(first[last] - exact[last])) / float(exact[last])}
