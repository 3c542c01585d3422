"""Diagram-factored evaluation equals the dense matrix product, for every diagram family.

Paper: Pearce-Crump, "Categorification of Group Equivariant Neural Networks", 2023,
arXiv:2304.14144: the weight matrix of an S_n-, O(n)-, Sp(n)- (or SO(n)-) equivariant layer is a sum
of diagram matrices, each the image of a diagram under a monoidal functor; factoring the diagram
(permutations around a planar diagram) gives an algorithm that multiplies a vector by the matrix
without forming it, and computes the same result.

Per seed the measurement takes a family by seed (S_n partition diagrams, O(n) and Sp(n) Brauer
diagrams, A_n jellyfish, Aut(C_5) bilabelled graphs), a layer with random weights (float64) on a
random input, and returns ``error``: ``|f_factored(x) - f_reference(x)|_max / max(1, |f_reference|_max)``,
where the reference forms ``sum_d λ_d ⊗ M_d`` entry by entry and the factored form contracts each
diagram as a tensor network (``blocks.equivariant.categorification.contract_network``).
"""
from __future__ import annotations

import torch

from ...blocks.equivariant import AlternatingLinear, BrauerLinear, GraphAutomorphismLinear, PartitionLinear
from ...blocks.equivariant.categorification import CATEGORIFICATION_PAPER
from ...blocks.equivariant.graph_automorphism import cycle_graph
from ...errors import ConfigError
from . import register_measure

FAMILIES = ("partition", "orthogonal", "symplectic", "alternating", "graph")


def _layer(family: str, n: int, k: int, l: int) -> torch.nn.Module:
    kw = dict(in_channels=2, out_channels=3, dtype=torch.float64)
    if family == "partition":
        return PartitionLinear(n, k, l, **kw)
    if family in ("orthogonal", "symplectic"):
        return BrauerLinear(n, k, l, group=family, **kw)
    if family == "alternating":
        return AlternatingLinear(n, k, l, **kw)
    return GraphAutomorphismLinear(cycle_graph(n), k, l, max_vertices=3, **kw)


@register_measure("diagram_factored_evaluation", metric="error", paper=CATEGORIFICATION_PAPER)
def diagram_factored_evaluation(seed: int, *, families: tuple[str, ...] = FAMILIES) -> dict[str, float]:
    families = tuple(families)
    if not families or any(f not in FAMILIES for f in families):
        raise ConfigError(f"diagram_factored_evaluation: families must be some of {list(FAMILIES)}, got {families!r}")
    g = torch.Generator().manual_seed(seed)
    family = families[seed % len(families)]
    k = int(torch.randint(1, 3, (1,), generator=g))
    l = int(torch.randint(1, 3, (1,), generator=g))
    if family in ("orthogonal", "symplectic") and (k + l) % 2:
        l += 1
    n = {"partition": 5, "orthogonal": 4, "symplectic": 4, "alternating": 3, "graph": 5}[family]
    with torch.random.fork_rng(devices=[]):
        layer = _layer(family, n, k, l)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(4, 2, *(n,) * k, generator=g, dtype=torch.float64)
        ref = layer(x, "reference")
        fac = layer(x, "factored")
    error = (fac - ref).abs().max().item() / max(1.0, ref.abs().max().item())
    return {"error": error, "family": float(FAMILIES.index(family)), "n": float(n), "k": float(k), "l": float(l),
            "diagrams": float(len(layer.diagrams))}
