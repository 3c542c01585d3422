"""B-cos networks are dynamic linear: the explanation W(x) x sums exactly to the output.

Paper: Arya, Rao, Böhle & Schiele, "B-cosification: Transforming Deep Neural Networks to be
Inherently Interpretable", 2024, arXiv:2411.00715 (Sec. 3, after Böhle, Fritz & Schiele,
"B-cos Networks: Alignment is All We Need for Interpretability", 2022, arXiv:2205.10268): a
B-cos network computes ``y(x) = W_{1->L}(x) x`` with the input-dependent matrix
``W_{1->L}(x) = prod_l W_l(a_{l-1})``, ``W_l(a) = diag(|cos(a, ŵ_j)|^(B-1)) Ŵ_l``, so the
contribution map ``C(x) = W_{1->L}(x) ⊙ x`` (one row per output, one column per input dimension)
sums over the input dimensions to the output exactly (a model-faithful explanation).

Per seed the measurement builds layerlab's B-cos channel mixer (``bcos``: two B-cos layers with
fixed gains, no other nonlinearity) in float64 with weights drawn from the seed's
``torch.Generator``, draws ``n_inputs`` inputs, and returns the largest relative deviation of the
summed contributions from the forward output::

    error = max_{n, j} | sum_i W(x_n)[j, i] x_n[i] - y(x_n)[j] | / max_{n, j} |y(x_n)[j]|
"""
from __future__ import annotations

import torch

from ...blocks.channels.bcos import BcosMLP
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


@register_measure("bcos_dynamic_linear", metric="error",
                  paper=Paper("B-cosification: Transforming Deep Neural Networks to be Inherently Interpretable",
                              2024, "2411.00715"))
def bcos_dynamic_linear(seed: int, *, d_model: int = 32, B: float = 2.0, max_out: int = 1, expansion: float = 4.0,
                        n_inputs: int = 64) -> dict[str, float]:
    if d_model < 1 or n_inputs < 1:
        raise ConfigError(f"bcos_dynamic_linear: need d_model, n_inputs >= 1, got {d_model}, {n_inputs}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the constructor's own draw leaves the global RNG as it was
        block = BcosMLP(d_model, B=B, max_out=max_out, expansion=expansion, dtype=torch.float64)
    with torch.no_grad():
        for layer in (block.fc1, block.fc2):
            bound = layer.in_features ** -0.5
            layer.weight.uniform_(-bound, bound, generator=g)
    block.eval()
    x = torch.randn(n_inputs, d_model, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        contributions = block.dynamic_weight(x) * x.unsqueeze(-2)  # (N, out, in): W(x)[j, i] x[i]
        total = contributions.sum(-1)
    scale = y.abs().max().item()
    return {"error": (total - y).abs().max().item() / scale, "output_scale": scale}
