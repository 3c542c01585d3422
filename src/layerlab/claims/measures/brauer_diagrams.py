"""Brauer diagrams: their matrices span the O(n)- / Sp(n)-equivariant maps, (l+k-1)!! of them, and
the layer is exactly equivariant.

Paper: Pearce-Crump, "Brauer's Group Equivariant Neural Networks", 2022, arXiv:2212.08630:
``Hom_{O(n)}((R^n)^{⊗k}, (R^n)^{⊗l}) = span{E_β}`` and ``Hom_{Sp(n)} = span{F_β}`` over the
``(l + k - 1)!!`` Brauer diagrams β (l + k even).

Per seed the measurement draws the group (O(n) or Sp(n) alternately by seed parity), ``k + l`` in
``{2, 4}`` and n (even for Sp(n)) in ``[2, k + l + 1]``, and returns

    count_error = |#diagrams - (l+k-1)!!| + |rank{M_β} - dim Hom_G| + [n >= k + l] |dim Hom_G - #diagrams|,

with ``dim Hom_G`` solved numerically from the Lie algebra (and, for O(n), a reflection) acting on
W; ``equivariance``: the largest ``|f(g^{⊗k} x) - g^{⊗l} f(x)|`` over ``elements`` random group
elements (QR of a Gaussian for O(n); products of exponentials of ``ε S`` for Sp(n)), relative to the
output scale, for the layer with random weights (float64). ``error = count_error + equivariance``.
"""
from __future__ import annotations

import torch

from ...blocks.equivariant._diagrams import act, commutant_dim, matrix_rank
from ...blocks.equivariant.brauer import (BRAUER_PAPER, BrauerLinear, double_factorial, group_constraints,
                                          random_orthogonal, random_symplectic)
from ...errors import ConfigError
from . import register_measure


@register_measure("brauer_diagram_count", metric="error", paper=BRAUER_PAPER)
def brauer_diagram_count(seed: int, *, orders: tuple[int, ...] = (2, 4), elements: int = 3) -> dict[str, float]:
    orders = tuple(orders)
    if not orders or any(isinstance(m, bool) or not isinstance(m, int) or m not in (2, 4) for m in orders):
        raise ConfigError(f"brauer_diagram_count: orders must be a list of k + l values from {{2, 4}} (even, "
                          f"small enough for the dense commutant), got {orders!r}")
    g = torch.Generator().manual_seed(seed)
    group = ("orthogonal", "symplectic")[seed % 2]
    m = orders[int(torch.randint(len(orders), (1,), generator=g))]
    k = int(torch.randint(0, m + 1, (1,), generator=g))
    l = m - k
    choices = [n for n in range(2, m + 2) if group == "orthogonal" or n % 2 == 0]
    n = choices[int(torch.randint(len(choices), (1,), generator=g))]
    with torch.random.fork_rng(devices=[]):
        layer = BrauerLinear(n, k, l, group=group, in_channels=2, out_channels=2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
    D = len(layer.diagrams)
    dim = commutant_dim(group_constraints(n, k, l, group))
    rank = matrix_rank([layer.dense(d) for d in layer.diagrams])
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    eq = 0.0
    with torch.no_grad():
        y = layer(x, "reference")
        factored = (layer(x, "factored") - y).abs().max().item()
        for _ in range(elements):
            G = random_orthogonal(n, g) if group == "orthogonal" else random_symplectic(n, g)
            eq = max(eq, (layer(act(G, x, k), "reference") - act(G, y, l)).abs().max().item()
                     / max(1.0, y.abs().max().item()))
    count_error = abs(D - double_factorial(m - 1)) + abs(rank - dim) + (abs(dim - D) if n >= m else 0)
    return {"error": count_error + eq, "count_error": float(count_error), "equivariance": eq, "factored": factored,
            "symplectic": float(group == "symplectic"), "n": float(n), "k": float(k), "l": float(l),
            "diagrams": float(D), "dimension": float(dim), "rank": float(rank)}
