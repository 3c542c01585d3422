"""Bilabelled graphs span the Aut(G)-equivariant maps, and the layer built from them is exactly
Aut(G)-equivariant.

Paper: Pearce-Crump & Knottenbelt, "Graph Automorphism Group Equivariant Neural Networks", 2023,
arXiv:2307.07810: ``Hom_{Aut(G)}((R^n)^{⊗k}, (R^n)^{⊗l}) = span{X_H}`` over the (k, l)-bilabelled
graphs H, ``X_H[I, J]`` = the number of homomorphisms H -> G that send the labels to I, J.

Per seed the measurement takes a graph G from ``graphs`` (cycles C_5, C_6 and the path P_4, by seed)
and ``k + l`` in ``orders``, builds ``GraphAutomorphismLinear`` from the bilabelled graphs on at most
``max_vertices`` vertices, and returns

    count_error = |rank{X_H} - dim Hom_{Aut(G)}| + |dim Hom_{Aut(G)} - orbits|,

with the dimension solved numerically (every automorphism, found by brute force, as a constraint)
and ``orbits`` the Burnside count of Aut(G) orbits on ``[n]^{k+l}``; ``equivariance``: the largest
``|f(P^{⊗k} x) - P^{⊗l} f(x)|`` over every automorphism (random weights, float64); ``gap``: the
same for a random permutation that is not an automorphism (reported; must be large).
``error = count_error + equivariance``.
"""
from __future__ import annotations

import torch

from ...blocks.equivariant._diagrams import act, commutant_dim, permutation_matrix
from ...blocks.equivariant.graph_automorphism import (GRAPH_AUT_PAPER, GraphAutomorphismLinear,
                                                      automorphism_constraints, automorphisms, cycle_graph,
                                                      orbit_count, path_graph)
from ...errors import ConfigError
from . import register_measure

_GRAPHS = {"C5": lambda: cycle_graph(5), "C6": lambda: cycle_graph(6), "P4": lambda: path_graph(4),
           "C4": lambda: cycle_graph(4), "P3": lambda: path_graph(3)}


@register_measure("graph_automorphism_span", metric="error", paper=GRAPH_AUT_PAPER)
def graph_automorphism_span(seed: int, *, graphs: tuple[str, ...] = ("C5", "C6", "P4"),
                            orders: tuple[int, ...] = (2, 3), max_vertices: int = 4) -> dict[str, float]:
    graphs, orders = tuple(graphs), tuple(orders)
    if not graphs or any(gname not in _GRAPHS for gname in graphs):
        raise ConfigError(f"graph_automorphism_span: graphs must name some of {sorted(_GRAPHS)}, got {graphs!r}")
    if not orders or any(isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 3 for m in orders):
        raise ConfigError(f"graph_automorphism_span: orders must be k + l values in [1, 3], got {orders!r}")
    g = torch.Generator().manual_seed(seed)
    name = graphs[seed % len(graphs)]
    A = _GRAPHS[name]()
    n = A.shape[0]
    m = orders[int(torch.randint(len(orders), (1,), generator=g))]
    k = int(torch.randint(0, m + 1, (1,), generator=g))
    l = m - k
    with torch.random.fork_rng(devices=[]):
        layer = GraphAutomorphismLinear(A, k, l, max_vertices=max_vertices, in_channels=2, out_channels=2,
                                        dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
    dim = commutant_dim(automorphism_constraints(A, k, l))
    orbits = orbit_count(A, m)
    rank = len(layer.diagrams)  # the kept graphs are linearly independent by construction
    x = torch.randn(3, 2, *(n,) * k, generator=g, dtype=torch.float64)
    auts = automorphisms(A)
    eq = 0.0
    with torch.no_grad():
        y = layer(x, "reference")
        factored = (layer(x, "factored") - y).abs().max().item()
        for p in auts:
            P = permutation_matrix(p)
            eq = max(eq, (layer(act(P, x, k), "reference") - act(P, y, l)).abs().max().item())
        while True:
            p = torch.randperm(n, generator=g).tolist()
            if p not in auts:
                break
        P = permutation_matrix(p)
        gap = (layer(act(P, x, k), "reference") - act(P, y, l)).abs().max().item()
    count_error = abs(rank - dim) + abs(dim - orbits)
    return {"error": count_error + eq, "count_error": float(count_error), "equivariance": eq, "gap": gap,
            "factored": factored, "n": float(n), "k": float(k), "l": float(l), "automorphisms": float(len(auts)),
            "graphs_kept": float(rank), "dimension": float(dim), "orbits": float(orbits)}
