r"""A gated diagonal linear RNN built from linear self-attention weights, against the attention itself.

Paper: Zucchet, Kobayashi, Akram, von Oswald, Larcher, Steger & Sacramento, "Gated recurrent neural
networks discover attention", 2023, arXiv:2309.01775 (Sec. 3, Fig. 1): linear recurrent neurons with
``lambda = 1`` between multiplicative input and output gates implement LSA
``y_t = P concat_h sum_{t'<=t} (W_V^h x_{t'})(W_K^h x_{t'})^T (W_Q^h x_t)`` exactly
(``lens.theory.gated_rnn_attention``).

Per seed: random LSA weights (``heads`` heads, ``d_k = d_v = dim``, Gaussian entries with variance
``1/dim``, projection ``P`` likewise) and ``batch`` random sequences of ``length`` tokens in
``dim`` dimensions, float64. ``error``: the relative error ``max |y_RNN - y_LSA| / max |y_LSA|`` of the
constructed RNN; ``decay_error``: the same with the key-value neurons' ``lambda = decay`` against LSA
with terms decayed by ``decay^{t - t'}``. Beside them: ``query_memory_error`` (the query neurons given
``lambda = 0.5`` instead of 0: large, so the statistic can fail) and ``neurons`` (``heads d_k (d_v + 1)``).
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import gated_rnn_attention as gra
from ...registry import Paper
from . import register_measure


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@register_measure("gated_rnn_lsa", metric="error",
                  paper=Paper("Gated recurrent neural networks discover attention", 2023, "2309.01775"))
def gated_rnn_lsa(seed: int, *, dim: int = 6, heads: int = 2, length: int = 20, batch: int = 8,
                  decay: float = 0.9) -> dict[str, float]:
    if dim < 1 or heads < 1 or length < 1 or batch < 1 or not 0.0 <= decay <= 1.0:
        raise ConfigError(f"gated_rnn_lsa: need dim, heads, length, batch >= 1 and decay in [0, 1]; got dim={dim}, "
                          f"heads={heads}, length={length}, batch={batch}, decay={decay}")
    g = torch.Generator().manual_seed(seed)
    f = {"generator": g, "dtype": torch.float64}
    w_q, w_k, w_v = (torch.randn(heads, dim, dim, **f) / math.sqrt(dim) for _ in range(3))
    p = torch.randn(dim, heads * dim, **f) / math.sqrt(heads * dim)
    x = torch.randn(batch, length, dim, **f)
    ref = gra.lsa(x, w_q, w_k, w_v, p)
    rnn = gra.construct(w_q, w_k, w_v, p)
    decayed = gra.lsa(x, w_q, w_k, w_v, p, decay=decay)
    return {"error": _rel(gra.gated_rnn(rnn, x), ref),
            "decay_error": _rel(gra.gated_rnn(gra.construct(w_q, w_k, w_v, p, decay=decay), x), decayed),
            "query_memory_error": _rel(gra.gated_rnn(gra.construct(w_q, w_k, w_v, p, query_memory=0.5), x), ref),
            "neurons": float(rnn.neurons)}
