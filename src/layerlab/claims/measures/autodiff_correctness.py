r"""AD of a ReLU network with biases at machine-representable parameters: correct where differentiable,
a Clarke subderivative on the kinks.

Paper: Lee, Park & Aiken, "On the Correctness of Automatic Differentiation for Neural Networks with
Machine-Representable Parameters", 2023, arXiv:2301.13370: for networks with bias parameters the
incorrect set is empty and AD always computes a Clarke subderivative
(``lens.theory.autodiff_correctness``).

Per seed, a two-layer ReLU MLP with biases (``hidden`` units, ``in_features`` inputs, ``examples``
fixed inputs), parameters and arithmetic in ``dtype`` (float32 by default: machine-representable
parameters of the usual format):

1. ``trials`` random parameter draws: AD's gradient against central finite differences of the same
   loss evaluated in float64 at the same parameters (step ``1e-6``, tiny next to the smallest
   ``|pre-activation|``, so no kink is crossed); ``differentiable_gap`` is the largest relative
   gap. ``random_kink_fraction`` is the fraction of these draws whose forward pass meets an exact
   zero pre-activation (the non-differentiable set is small: expect 0).
2. ``trials`` draws placed on 1-4 kinks at once (biases set to ``-fl(w_j . x_k)``): the network is
   not differentiable there (``kink_jump``: the relative difference of the gradients of the two
   regions on either side, > 0). ``clarke_gap`` is the relative distance of AD's gradient from the
   gradient of the adjacent region where the kinked neurons are off, an element of the Clarke
   subdifferential (0 when AD returns it).

``error = max(differentiable_gap, clarke_gap)``. ``no_bias_ad_error`` is the relative error of AD
on the bias-free ``relu(w x) - relu(-w x)`` at ``w = 0`` (1: the incorrect set of a network
without biases need not be empty, so the statistic can fail).
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens.theory import autodiff_correctness as adc
from ...registry import Paper
from . import register_measure

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _draw(g: torch.Generator, hidden: int, d: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {"w": torch.randn(hidden, d, generator=g).to(dtype), "b": torch.randn(hidden, generator=g).to(dtype),
            "a": torch.randn(hidden, generator=g).to(dtype), "c": torch.randn((), generator=g).to(dtype)}


def _finite_difference(params: dict[str, torch.Tensor], x: torch.Tensor, h: float) -> torch.Tensor:
    p64 = {k: v.double() for k, v in params.items()}
    flat = torch.cat([p64[k].reshape(-1) for k in ("w", "b", "a", "c")])
    shapes = [(k, p64[k].shape, p64[k].numel()) for k in ("w", "b", "a", "c")]

    def loss(v: torch.Tensor) -> float:
        out, i = {}, 0
        for k, shape, n in shapes:
            out[k] = v[i:i + n].reshape(shape)
            i += n
        return float(adc.mlp_loss(out, x.double()))

    grad = torch.empty_like(flat)
    for i in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[i] = h
        grad[i] = (loss(flat + e) - loss(flat - e)) / (2 * h)
    return grad


@register_measure("autodiff_correctness", metric="error",
                  paper=Paper("On the Correctness of Automatic Differentiation for Neural Networks with "
                              "Machine-Representable Parameters", 2023, "2301.13370"))
def autodiff_correctness(seed: int, *, hidden: int = 16, in_features: int = 4, examples: int = 8, trials: int = 50,
                         dtype: str = "float32") -> dict[str, float]:
    if hidden < 1 or in_features < 1 or examples < 1 or trials < 1:
        raise ConfigError(f"autodiff_correctness: need hidden, in_features, examples, trials >= 1; got {hidden}, "
                          f"{in_features}, {examples}, {trials}")
    if dtype not in _DTYPES:
        raise ConfigError(f"autodiff_correctness: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    dt = _DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, in_features, generator=g).to(dt)
    diff_gap, random_kinks = 0.0, 0
    for _ in range(trials):
        params = _draw(g, hidden, in_features, dt)
        if len(adc.kink_pairs(params, x)):
            random_kinks += 1
            continue
        ad = adc.ad_gradient(params, x).double()
        fd = _finite_difference(params, x, 1e-6)
        diff_gap = max(diff_gap, float((ad - fd).abs().max() / fd.abs().max()))
    clarke_gap, jump = 0.0, float("inf")
    for _ in range(trials):
        params = _draw(g, hidden, in_features, dt)
        m = int(torch.randint(1, 5, (), generator=g))
        neurons = torch.randperm(hidden, generator=g)[:m]
        params = adc.place_on_kinks(params, x, neurons, torch.randint(examples, (m,), generator=g))
        z = adc.pre_activations(params, x)
        if not len(adc.kink_pairs(params, x)):
            raise RuntimeError("placing a bias on a kink did not give an exact zero pre-activation")
        delta = 0.25 * float(z[z != 0].abs().min())  # crosses no other kink
        ad = adc.ad_gradient(params, x)
        off = adc.adjacent_region_gradient(params, x, delta)
        on = adc.adjacent_region_gradient(params, x, -delta)
        scale = float(torch.maximum(ad.abs().max(), off.abs().max()))
        clarke_gap = max(clarke_gap, float((ad - off).abs().max()) / scale)
        jump = min(jump, float((on - off).abs().max()) / scale)
    ad0, true0 = adc.no_bias_counterexample()
    return {"error": max(diff_gap, clarke_gap), "differentiable_gap": diff_gap, "clarke_gap": clarke_gap,
            "kink_jump": jump, "random_kink_fraction": random_kinks / trials,
            "no_bias_ad_error": abs(ad0 - true0) / abs(true0)}
