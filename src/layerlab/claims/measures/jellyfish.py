"""Jellyfish: partition diagrams plus jellyfish give every A_n-equivariant map, and the jellyfish
maps are A_n- but not S_n-equivariant.

Paper: Pearce-Crump, "How Jellyfish Characterise Alternating Group Equivariant Neural Networks",
2023, arXiv:2301.10152: a basis of ``Hom_{A_n}((R^n)^{⊗k}, (R^n)^{⊗l})`` made of the partition
diagrams (<= n blocks) and the jellyfish built from the determinant map (for set partitions whose
S_n orbit splits in two under A_n: n - 1 or n blocks), so

    dim = sum_{t<=n} S(l+k, t) + S(l+k, n) + S(l+k, n-1).

Per seed the measurement draws ``k + l = m`` in ``[2, max_order]``, ``k`` and ``n`` in
``[3, m + 1]`` (so that jellyfish exist) and returns

    count_error = |#diagrams - formula| + |dim Hom_{A_n} - #diagrams| + |rank - #diagrams|

(dimension solved numerically from the 3-cycles generating A_n), ``equivariance``: the largest
``|f(P^{⊗k} x) - P^{⊗l} f(x)|`` over random even permutations (full layer, random weights),
``anti``: the largest ``|f(P x) + P f(x)|`` over random odd permutations for the jellyfish-only
layer, and ``odd_gap``: the smallest ``|f(P x) - P f(x)|`` there (must be large: the extra maps are
not S_n-equivariant). ``error = count_error + equivariance + anti + [odd_gap < 1e-6]``.
"""
from __future__ import annotations

import torch

from ...blocks.equivariant._diagrams import (act, commutant_dim, matrix_rank, permutation_matrix, stirling2,
                                             tensor_power)
from ...blocks.equivariant.jellyfish import (JELLYFISH_PAPER, AlternatingLinear, alternating_generators,
                                             random_permutation)
from ...errors import ConfigError
from . import register_measure


@register_measure("jellyfish_alternating", metric="error", paper=JELLYFISH_PAPER)
def jellyfish_alternating(seed: int, *, max_order: int = 4, perms: int = 4) -> dict[str, float]:
    if isinstance(max_order, bool) or not isinstance(max_order, int) or not 2 <= max_order <= 4:
        raise ConfigError(f"jellyfish_alternating: max_order must be an integer in [2, 4], got {max_order!r}")
    g = torch.Generator().manual_seed(seed)
    m = int(torch.randint(2, max_order + 1, (1,), generator=g))
    k = int(torch.randint(0, m + 1, (1,), generator=g))
    l = m - k
    n = int(torch.randint(3, m + 2, (1,), generator=g))
    with torch.random.fork_rng(devices=[]):
        layer = AlternatingLinear(n, k, l, in_channels=2, out_channels=2, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    D = len(layer.diagrams)
    formula = sum(stirling2(m, t) for t in range(1, n + 1)) + stirling2(m, n) + stirling2(m, n - 1)
    dim = commutant_dim([(tensor_power(permutation_matrix(p), l), tensor_power(permutation_matrix(p), k))
                         for p in alternating_generators(n)])
    rank = matrix_rank([layer.dense(d) for d in layer.diagrams])
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    eq, anti, odd_gap = 0.0, 0.0, float("inf")
    with torch.no_grad():
        y = layer(x, "reference")
        for _ in range(perms):
            P = permutation_matrix(random_permutation(n, 0, g))
            eq = max(eq, (layer(act(P, x, k), "reference") - act(P, y, l)).abs().max().item())
        for w, d in zip(layer.weight, layer.diagrams):
            if d[0] == "partition":
                w.zero_()
        if layer.bias is not None:
            for b, d in zip(layer.bias, layer.bias_diagrams):
                if d[0] == "partition":
                    b.zero_()
        yj = layer(x, "reference")
        for _ in range(perms):
            P = permutation_matrix(random_permutation(n, 1, g))
            yp = layer(act(P, x, k), "reference")
            anti = max(anti, (yp + act(P, yj, l)).abs().max().item())
            odd_gap = min(odd_gap, (yp - act(P, yj, l)).abs().max().item())
    count_error = abs(D - formula) + abs(dim - D) + abs(rank - D)
    return {"error": count_error + eq + anti + float(odd_gap < 1e-6), "count_error": float(count_error),
            "equivariance": eq, "anti": anti, "odd_gap": odd_gap, "n": float(n), "k": float(k), "l": float(l),
            "diagrams": float(D), "jellyfish": float(sum(d[0] == "jellyfish" for d in layer.diagrams)),
            "formula": float(formula), "dimension": float(dim), "rank": float(rank)}
