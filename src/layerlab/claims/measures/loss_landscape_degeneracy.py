r"""Interaction sparsity of the Interaction Basis against the neuron basis on a digits MLP, with the
degeneracy counts of the trained network.

Paper: Bushnaq et al., "Using Degeneracy in the Loss Landscape for Mechanistic Interpretability",
2024, arXiv:2405.10927 (abstract: "We propose that if we can represent a neural network in a way
that is invariant to reparameterizations that exploit the degeneracies, then this representation
is likely to be more interpretable, and we provide some evidence that such a representation is
likely to have sparser interactions. We introduce the Interaction Basis ..."). The three sources
of degeneracy and the basis are in ``lens.interaction_basis``.

The measurement trains a ReLU MLP ``64 -> width (x depth) -> 10`` on layerlab's digits train split
(Adam, batch 64, one thread, ``seed``) and, on the training split, compares the interaction graph
in the Interaction Basis (Jacobians to the output) with the graph in the neuron basis: over every
pair of adjacent node layers, the fewest edges carrying ``mass`` of the pair's total edge weight,
summed; ``ratio = count_IB / count_neuron`` is the metric (below 1: sparser in the IB). It also
records the degeneracy of each hidden layer (``lens.interaction_basis.degeneracy``, eigenvalues at
or below 1e-10 of the largest): null directions of the activation covariance and of the gradient
Gram ``E[J^T J]``, units removable by merging ReLUs with identical firing sets, dead units.
"""
from __future__ import annotations

from ...lens import interaction_basis as ib
from ...registry import Paper
from . import register_measure
from ._digits_mlp import digits_splits, train_mlp
from ._fit import one_thread
from .local_interaction_basis import graph_counts


@register_measure("ib_vs_neuron_sparsity", metric="ratio",
                  paper=Paper("Using Degeneracy in the Loss Landscape for Mechanistic Interpretability", 2024,
                              "2405.10927"))
def ib_vs_neuron_sparsity(seed: int, *, width: int = 64, depth: int = 2, steps: int = 1500, lr: float = 1e-3,
                          mass: float = 0.9, rtol: float = 1e-10) -> dict[str, float]:
    out = graph_counts(seed, ("ib", "neuron"), width=width, depth=depth, steps=steps, lr=lr, mass=mass, rtol=rtol)
    x, y = digits_splits()["train"]
    with one_thread():
        net = train_mlp(x, y, seed, width=width, depth=depth, steps=steps, lr=lr)  # the same weights again
        for l, counts in enumerate(ib.degeneracy(net, x, rtol=rtol), start=1):
            out.update({f"{k}.{l}": float(v) for k, v in counts.items()})
    return out
