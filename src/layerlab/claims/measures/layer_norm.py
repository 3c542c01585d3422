"""Layer normalization's invariances (Table 1 of the paper), measured on layerlab's LayerNorm.

Paper: Ba, Kiros & Hinton, "Layer Normalization", 2016, arXiv:1607.06450 (Sec. 5.1, Table 1:
invariance under weights and data transformations).

With summed inputs ``a = W x + b`` and ``h = g ⊙ (a - mu) / sigma + beta`` (``mu``, ``sigma`` over
the ``H`` units of the layer), Table 1 states that layer normalization is invariant to

- weight matrix re-scaling, ``W -> delta W`` (and ``b -> delta b``);
- weight matrix re-centering, ``W -> W + 1 gamma^T`` (every unit's incoming weights shifted by the
  same vector ``gamma``: every ``a_i`` moves by the same ``gamma^T x``, which ``mu`` removes);
- single training case re-scaling, ``x -> delta x`` (with ``b = 0``);

and *not* to dataset re-centering or weight-vector (per-unit) re-scaling.

The measurement builds layerlab's ``layernorm`` (float64, ``eps = 0``: the paper's equation; random
gain and bias from the seed) behind a random linear map and returns, for each of the three
invariances, the max relative change of the output; ``error`` is the largest. As a control,
``per_unit_change`` is the relative change under per-unit re-scaling ``W -> diag(s) W``, which
the paper lists as *not* an invariance (it should be of order 1).
"""
from __future__ import annotations

import torch

from ...blocks.norms import LayerNorm
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


@register_measure("layernorm_invariances", metric="error",
                  paper=Paper("Layer Normalization", 2016, "1607.06450"))
def layernorm_invariances(seed: int, *, d_in: int = 16, hidden: int = 64, batch: int = 128) -> dict[str, float]:
    if d_in < 1 or hidden < 2 or batch < 1:
        raise ConfigError(f"layernorm_invariances: need d_in >= 1, hidden >= 2, batch >= 1; "
                          f"got d_in={d_in}, hidden={hidden}, batch={batch}")
    g = torch.Generator().manual_seed(seed)
    f64 = {"generator": g, "dtype": torch.float64}
    norm = LayerNorm(hidden, eps=0.0, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.5 * torch.randn(hidden, **f64))
        norm.bias.copy_(0.5 * torch.randn(hidden, **f64))
        W = torch.randn(hidden, d_in, **f64) / d_in ** 0.5
        b = torch.randn(hidden, **f64)
        x = torch.randn(batch, d_in, **f64)
        delta = float(0.1 + 10.0 * torch.rand(1, **f64))
        gamma = torch.randn(d_in, **f64)
        s = 0.5 + torch.rand(hidden, 1, **f64)

        def layer(W_: torch.Tensor, b_: torch.Tensor, x_: torch.Tensor) -> torch.Tensor:
            return norm(x_ @ W_.T + b_)

        h = layer(W, b, x)
        scale = h.abs().max().item()

        def change(other: torch.Tensor) -> float:
            return (other - h).abs().max().item() / scale

        weight_rescale = change(layer(delta * W, delta * b, x))
        weight_recenter = change(layer(W + gamma.expand(hidden, d_in), b, x))
        h0 = layer(W, torch.zeros_like(b), x)
        case_rescale = (layer(W, torch.zeros_like(b), delta * x) - h0).abs().max().item() / h0.abs().max().item()
        per_unit = change(layer(s * W, s.squeeze(-1) * b, x))
    return {"error": max(weight_rescale, weight_recenter, case_rescale), "weight_rescale": weight_rescale,
            "weight_recenter": weight_recenter, "case_rescale": case_rescale, "per_unit_change": per_unit}
