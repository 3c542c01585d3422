"""Diagram-factored evaluation of equivariant layers: a diagram is a tensor network, contracted
without forming its ``n^l x n^k`` matrix.

Paper: Pearce-Crump, "Categorification of Group Equivariant Neural Networks", 2023,
arXiv:2304.14144. The paper reads the diagram matrices of S_n (partition diagrams), O(n), Sp(n)
(Brauer diagrams) and SO(n) as the images of a monoidal functor from a diagram category, so a
diagram factors as ``σ_l ∘ (planar diagram) ∘ σ_k`` (permutations of the tensor factors around a
planar diagram, itself a tensor product of small pieces: contractions, copies, unit/counit). Its
fast multiplication applies the factors one after another instead of the dense matrix.

Here the factorisation is written as one tensor network: every connected piece of the diagram is a
*node* (an index summed or carried through), every tensor factor of the input/output is a leg
attached to a node, and the small pieces are operands:

- a block of a partition diagram -> one node: input legs in the same block share the node (the
  diagonal of x), a block with no output leg sums its node (the contraction), the second and later
  output legs of a block are copies made by ``δ`` (identity) operands, an output-only block is a
  ``1`` (ones) operand;
- a Brauer pair in one row for Sp(n) -> two nodes joined by the form ``ε``;
- a jellyfish (A_n) -> the determinant tensor ``det[a_1..a_n] = sgn(a)`` on n nodes;
- a bilabelled graph H (Aut(G)) -> the nodes are H's vertices and every edge is an operand ``A_G``.

``torch.einsum`` then contracts the network in an order it chooses; the permutations ``σ_k, σ_l`` are
the legs' assignment to nodes. The cost is that of the network (``n^{#nodes}`` at worst), never the
``n^{l+k}`` of the dense matrix. Tests compare it with the dense matrix product entry by entry
(float64 <= 1e-10).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from ...errors import ConfigError
from ...registry import Paper

CATEGORIFICATION_PAPER = Paper("Categorification of Group Equivariant Neural Networks", 2023, "2304.14144")

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def contract_network(x: torch.Tensor, n: int, out_legs: Sequence[Hashable], in_legs: Sequence[Hashable],
                     operands: Sequence[tuple[torch.Tensor, Sequence[Hashable]]] = (),
                     free_nodes: Sequence[Hashable] = ()) -> torch.Tensor:
    """Contract the tensor network whose legs are ``x``'s last ``len(in_legs)`` axes.

    ``in_legs[y]`` / ``out_legs[t]``: the node of input axis y / output axis t; ``operands``: small
    tensors with the nodes of their axes; ``free_nodes``: extra nodes touching nothing (each a
    factor n). Every node is summed over [n] unless it carries an output leg. Returns
    ``(*, n, ..., n)`` with ``len(out_legs)`` trailing axes.
    """
    letters: dict[Hashable, str] = {}
    fresh = iter(_LETTERS)

    def letter(node: Hashable) -> str:
        if node not in letters:
            try:
                letters[node] = next(fresh)
            except StopIteration:
                raise ConfigError("contract_network: more than 52 nodes; the diagram is too large") from None
        return letters[node]

    x_sub = "".join(letter(v) for v in in_legs)
    subs, tensors = [], []
    for t, nodes in operands:
        subs.append("".join(letter(v) for v in nodes))
        tensors.append(t.to(x))
    seen = set(x_sub).union(*subs) if subs else set(x_sub)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    out_sub = []
    used_out: set[str] = set()
    for node in out_legs:
        c = letter(node)
        if c not in used_out:  # the first output leg of a node carries the node itself
            used_out.add(c)
            out_sub.append(c)
        else:  # later legs are copies: δ(node, leg)
            leg = letter(("copy", len(out_sub)))
            subs.append(c + leg)
            tensors.append(eye)
            out_sub.append(leg)
    for node in list(out_legs) + list(free_nodes):
        c = letter(node)
        if c not in seen and c not in "".join(subs):
            subs.append(c)
            tensors.append(torch.ones(n, dtype=x.dtype, device=x.device))
            seen.add(c)
    expr = "..." + x_sub + "," + ",".join(subs) + "->..." + "".join(out_sub) if subs else \
        "..." + x_sub + "->..." + "".join(out_sub)
    return torch.einsum(expr, x, *tensors)


def partition_legs(blocks: Sequence[Sequence[int]], k: int, l: int) -> tuple[list[int], list[int]]:
    """Legs of a (k, l) partition diagram: vertex v's node is the index of its block."""
    node = {v: b for b, block in enumerate(blocks) for v in block}
    return [node[t] for t in range(l)], [node[l + y] for y in range(k)]
