"""HyperZ·Z·W: full context interaction in one layer.

Paper: Harvie Zhang, "HyperZ·Z·W Operator Connects Slow-Fast Networks for Full Context
Interaction", 2024, arXiv:2401.17948: "employing large implicit kernels to achieve full context
interaction at each layer": a slow coordinate network generates a hyper-kernel ``W`` as long as the
input; the operator multiplies it elementwise with the activations, ``W~ = W ⊙ Z``, then convolves
``Z`` with ``W~`` (causal here: ``y_t = sum_{j<=t} W~_j ⊙ Z_{t-j}``).

Per seed: a ``hyperzzw`` mixer (width ``d_model``, ``l_max = length``) and a random input drawn from a
``torch.Generator``; the Jacobian blocks ``J[t, i] = d y_t / d x_i`` (D x D, float64) of one layer::

    error = 1 - (fraction of pairs i <= t with ||J[t, i]|| > 1e-9 max ||J||)

(0 when every output reads every earlier input). Also reported: ``fft_error``, the FFT form against
the written-out sum, and ``future_leak``, the largest ``||J[t, i]||`` with ``i > t`` over the largest ``||J||`` (~1e-16:
causal up to the FFT's rounding).
"""
from __future__ import annotations

import torch

from ...blocks.mixers.hyperzzw import HyperZZW
from ...errors import ConfigError
from ...registry import get
from . import register_measure


@register_measure("hyperzzw_full_context", metric="error", paper=get("mixer", "hyperzzw").paper)
def hyperzzw_full_context(seed: int, *, d_model: int = 8, length: int = 64) -> dict[str, float]:
    if int(d_model) < 1 or int(length) < 2:
        raise ConfigError(f"hyperzzw_full_context: need d_model >= 1 and length >= 2; got {d_model}, {length}")
    g = torch.Generator().manual_seed(seed)
    L, D = int(length), int(d_model)
    block = HyperZZW(D, l_max=L, dtype=torch.float64, generator=g)
    x = torch.randn(1, L, D, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda z: block(z)[0], x)[:, :, 0]  # (L, D, L, D)
    norms = J.permute(0, 2, 1, 3).flatten(2).norm(dim=-1)  # (t, i)
    past = torch.ones(L, L, dtype=torch.bool).tril()
    reached = (norms[past] > 1e-9 * norms.max()).double().mean().item()
    with torch.no_grad():
        a, b = block(x, "fft"), block(x, "reference")
    return {"error": 1.0 - reached, "fft_error": ((a - b).norm() / b.norm()).item(),
            "future_leak": (norms[~past].max() / norms.max()).item()}
