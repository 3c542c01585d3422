r"""False matches of a dendritic segment on random sparse patterns, counted by Monte Carlo.

Paper: Ahmad & Hawkins, "How do neurons operate on sparse distributed representations? A
mathematical theory of sparsity, neurons and active dendrites", 2016, arXiv:1601.00720, Eq. 1:
``P_false = sum_{b=theta}^{s} C(s, b) C(n - s, a - b) / C(n, a)`` (``lens.theory.sparse_dendrites``).

The measurement fixes one segment (synapses on a random set of ``s`` of ``n`` cells, drawn from the
seed), draws ``patterns`` random binary patterns with exactly ``a`` active cells (the top ``a`` of
``n`` uniform draws), counts for each the active cells under the segment's synapses, and
estimates the fraction at or above each threshold in ``thresholds``. ``error`` is the largest
relative gap ``|P_hat - P| / P`` over the thresholds; ``z_max`` the largest gap in binomial
standard errors.
"""
from __future__ import annotations


import torch

from ...errors import ConfigError
from ...lens.theory import sparse_dendrites as sd
from ...registry import Paper
from . import register_measure

_CHUNK = 50_000


@register_measure("sdr_false_match", metric="error",
                  paper=Paper("How do neurons operate on sparse distributed representations? A mathematical theory "
                              "of sparsity, neurons and active dendrites", 2016, "1601.00720"))
def sdr_false_match(seed: int, *, n: int = 256, a: int = 16, s: int = 24,
                    thresholds: tuple[int, ...] | list[int] = (3, 4, 5), patterns: int = 1_000_000) -> dict[str, float]:
    ths = [int(t) for t in thresholds]
    if not ths or patterns < 1 or not 0 < a <= n or not 0 < s <= n:
        raise ConfigError(f"sdr_false_match: need 0 < a <= n, 0 < s <= n, thresholds and patterns >= 1; got n={n}, "
                          f"a={a}, s={s}, thresholds={ths}, patterns={patterns}")
    exact = torch.tensor([sd.false_match_probability(n, a, s, t) for t in ths], dtype=torch.float64)
    if bool((exact <= 0).any()):
        raise ConfigError(f"sdr_false_match: a threshold in {ths} has probability 0 (theta > min(s, a)); lower it")
    g = torch.Generator().manual_seed(seed)
    segment = torch.zeros(n, dtype=torch.bool)
    segment[torch.randperm(n, generator=g)[:s]] = True
    counts = torch.zeros(len(ths), dtype=torch.float64)
    for start in range(0, patterns, _CHUNK):
        m = min(_CHUNK, patterns - start)
        active = torch.rand(m, n, generator=g).topk(a, dim=1).indices  # a random a-subset per pattern
        overlap = segment[active].sum(1)  # active cells under the segment's synapses
        counts += torch.stack([(overlap >= t).sum() for t in ths]).double()
    p_hat = counts / patterns
    se = (exact * (1 - exact) / patterns).sqrt()
    return {"error": float(((p_hat - exact).abs() / exact).max()), "z_max": float(((p_hat - exact).abs() / se).max()),
            "relative_se_max": float((se / exact).max()),
            **{f"p_theta{t}": float(p) for t, p in zip(ths, p_hat)},
            **{f"predicted_theta{t}": float(p) for t, p in zip(ths, exact)}}
