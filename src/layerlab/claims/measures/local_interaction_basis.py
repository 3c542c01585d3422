r"""Interaction sparsity of the Local Interaction Basis against PCA on a digits MLP.

Paper: Bushnaq et al., "The Local Interaction Basis: Identifying Computationally-Relevant and
Sparsely Interacting Features in Neural Networks", 2024, arXiv:2405.10928 (abstract: "We evaluate
the effectiveness of LIB on modular addition and CIFAR-10 models, finding that it identifies more
computationally-relevant features that interact more sparsely, compared to principal component
analysis"). ``lens.interaction_basis`` builds LIB, the PCA basis and the interaction edges
``E^l_{ij} = E_x[(Ĵ^l_{ij} f̂^l_j)²]``.

The measurement trains a ReLU MLP ``64 -> width (x depth) -> 10`` on layerlab's digits train split
(Adam, batch 64, one thread, ``seed``), builds both bases on the training split (float64, only
numerically null directions dropped, ``rtol``) and counts, over every pair of adjacent node layers
(input, hidden layers, logits), the fewest edges that carry ``mass`` of each pair's total edge
weight (``lens.interaction_basis.edge_count``, summed over pairs). ``ratio = count_LIB / count_PCA``
is the metric (below 1: LIB's graph is sparser); the features kept per layer and the per-pair
counts are recorded.
"""
from __future__ import annotations

from ...errors import ConfigError
from ...lens import interaction_basis as ib
from ...registry import Paper
from . import register_measure
from ._digits_mlp import check, digits_splits, train_mlp
from ._fit import one_thread


def graph_counts(seed: int, kinds: tuple[str, str], *, width: int, depth: int, steps: int, lr: float, mass: float,
                 rtol: float) -> dict[str, float]:
    """Train the digits MLP and compare the edge counts of two bases: ``ratio = count_a / count_b``."""
    check(width, depth, steps, lr)
    if not 0 < mass <= 1 or not 0 < rtol < 1:
        raise ConfigError(f"need 0 < mass <= 1 and 0 < rtol < 1; got {mass}, {rtol}")
    x, y = digits_splits()["train"]
    out: dict[str, float] = {}
    with one_thread():
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr)
        totals = {}
        for kind in kinds:
            bases = ib.interaction_bases(net, x, kind, rtol=rtol)
            edges = ib.interaction_graph(net, x, bases)
            counts = [ib.edge_count(e, mass) for e in edges]
            totals[kind] = sum(counts)
            out[f"count_{kind}"] = float(totals[kind])
            out.update({f"count_{kind}.{l}": float(c) for l, c in enumerate(counts)})
            out.update({f"features_{kind}.{l}": float(b.size) for l, b in enumerate(bases)})
    a, b = kinds
    return {"ratio": totals[a] / totals[b], **out}


@register_measure("lib_vs_pca_sparsity", metric="ratio",
                  paper=Paper("The Local Interaction Basis: Identifying Computationally-Relevant and Sparsely "
                              "Interacting Features in Neural Networks", 2024, "2405.10928"))
def lib_vs_pca_sparsity(seed: int, *, width: int = 64, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                        mass: float = 0.9, rtol: float = 1e-10) -> dict[str, float]:
    return graph_counts(seed, ("lib", "pca"), width=width, depth=depth, steps=steps, lr=lr, mass=mass, rtol=rtol)
