"""Partition diagrams: their number is the dimension of the S_n-equivariant maps, and the layer is
exactly equivariant.

Paper: Pearce-Crump, "Connecting Permutation Equivariant Neural Networks and Partition Diagrams",
2022, arXiv:2212.08648: ``Hom_{S_n}((R^n)^{⊗k}, (R^n)^{⊗l})`` has the basis ``{D_π}`` of partition
diagrams of l + k vertices with at most n blocks; for ``n >= l + k`` its size is the Bell number
``B(l + k)``.

Per seed the measurement draws ``k, l >= 0`` with ``min_order <= k + l <= max_order`` and ``n`` in
``[k + l, k + l + extra_n]`` from a ``torch.Generator`` and returns

    count_error = |#diagrams - B(k + l)| + |dim Hom_{S_n} - #diagrams| + |rank{D_π} - #diagrams|,

where the dimension is solved numerically (nullity of ``P^{⊗l} W - W P^{⊗k} = 0`` for the generators
(1 2) and (1 2 .. n) of S_n) and the rank is that of the dense diagram matrices; ``equivariance``:
the largest ``|f(P^{⊗k} x) - P^{⊗l} f(x)|`` over ``perms`` random permutations, for the layer with
random weights and bias (float64); ``factored``: the largest entry-wise difference between the
factored and reference forms. ``error = count_error + equivariance``.
"""
from __future__ import annotations

import torch

from ...blocks.equivariant._diagrams import act, bell, commutant_dim, matrix_rank, permutation_matrix, tensor_power
from ...blocks.equivariant.partition import PARTITION_PAPER, PartitionLinear
from ...errors import ConfigError
from . import register_measure


def _draw_orders(g: torch.Generator, min_order: int, max_order: int, extra_n: int) -> tuple[int, int, int]:
    m = int(torch.randint(min_order, max_order + 1, (1,), generator=g))
    k = int(torch.randint(0, m + 1, (1,), generator=g))
    n = max(m, 2) + int(torch.randint(0, extra_n + 1, (1,), generator=g))
    return n, k, m - k


@register_measure("partition_diagram_count", metric="error", paper=PARTITION_PAPER)
def partition_diagram_count(seed: int, *, min_order: int = 1, max_order: int = 4, extra_n: int = 1, perms: int = 5) -> dict[str, float]:
    if isinstance(max_order, bool) or not isinstance(max_order, int) or not 1 <= max_order <= 4:
        raise ConfigError(f"partition_diagram_count: max_order must be an integer in [1, 4] (the commutant is "
                          f"solved densely), got {max_order!r}")
    if isinstance(min_order, bool) or not isinstance(min_order, int) or not 1 <= min_order <= max_order:
        raise ConfigError(f"partition_diagram_count: min_order must be an integer in [1, max_order], got {min_order!r}")
    if isinstance(extra_n, bool) or not isinstance(extra_n, int) or not 0 <= extra_n <= 2:
        raise ConfigError(f"partition_diagram_count: extra_n must be an integer in [0, 2], got {extra_n!r}")
    g = torch.Generator().manual_seed(seed)
    n, k, l = _draw_orders(g, min_order, max_order, extra_n)
    with torch.random.fork_rng(devices=[]):
        layer = PartitionLinear(n, k, l, in_channels=2, out_channels=2, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    D = len(layer.diagrams)
    gens = [[1, 0] + list(range(2, n)), list(range(1, n)) + [0]]
    dim = commutant_dim([(tensor_power(permutation_matrix(p), l), tensor_power(permutation_matrix(p), k))
                         for p in gens])
    rank = matrix_rank([layer.dense(d) for d in layer.diagrams])
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    eq = 0.0
    with torch.no_grad():
        y = layer(x, "reference")
        factored = (layer(x, "factored") - y).abs().max().item()
        for _ in range(perms):
            P = permutation_matrix(torch.randperm(n, generator=g).tolist())
            eq = max(eq, (layer(act(P, x, k), "reference") - act(P, y, l)).abs().max().item())
    count_error = abs(D - bell(k + l)) + abs(dim - D) + abs(rank - D)
    return {"error": count_error + eq, "count_error": float(count_error), "equivariance": eq, "factored": factored,
            "n": float(n), "k": float(k), "l": float(l), "diagrams": float(D), "bell": float(bell(k + l)),
            "dimension": float(dim), "rank": float(rank)}
