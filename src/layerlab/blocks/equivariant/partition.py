"""S_n-equivariant linear layers between tensor powers of R^n, one weight per partition diagram.

Paper: Godfrey, Rawson, Brown & Kvinge / Pearce-Crump, "Connecting Permutation Equivariant Neural
Networks and Partition Diagrams", 2022, arXiv:2212.08648 (Pearce-Crump). S_n acts on R^n by
permutation matrices and on ``(R^n)^{⊗k}`` by ``ρ_k(σ) = P_σ^{⊗k}``. For a set partition π of the
l + k vertices (top row: output indices ``i_1..i_l``, bottom row: input indices ``j_1..j_k``) the
diagram basis matrix is

    D_π[I, J] = δ_π(I, J) = 1 if all indices in each block of π are equal, else 0,

and ``Hom_{S_n}((R^n)^{⊗k}, (R^n)^{⊗l}) = span{D_π : π has at most n blocks}``, a basis; for
``n >= l + k`` every one of the Bell number ``B(l + k)`` partitions counts. The layer is

    y = sum_π λ_π D_π x  (+ sum_{π' ∈ Π_{0,l}} β_{π'} D_{π'}),

with ``λ_π`` a ``c_out x c_in`` matrix per diagram (channels as in the paper's multi-channel
layers) and the bias spanned by the (0, l)-diagrams (the S_n-invariant tensors of order l).

Shapes: ``(*, c_in, n, ..., n)`` (k axes) -> ``(*, c_out, n, ..., n)`` (l axes). Modes:
``"reference"`` builds ``sum λ_π ⊗ D_π`` entry by entry and multiplies; ``"factored"`` contracts
each diagram as a tensor network (``categorification.contract_network``). Initialisation: not given
by the paper; ``λ ~ N(0, 1/(c_in · #diagrams))``, bias zero.
"""
from __future__ import annotations

import torch

from ...registry import Paper
from ._diagrams import DiagramLinear, Partition, all_indices, check_orders, set_partitions
from .categorification import contract_network, partition_legs

PARTITION_PAPER = Paper("Connecting Permutation Equivariant Neural Networks and Partition Diagrams", 2022, "2212.08648")


def partition_diagrams(n: int, k: int, l: int) -> list[Partition]:
    """The (k, l)-partition diagrams with at most n blocks (vertices 0..l-1 top, l..l+k-1 bottom)."""
    return [p for p in set_partitions(l + k) if len(p) <= n]


def partition_matrix(blocks: Partition, n: int, k: int, l: int) -> torch.Tensor:
    """``D_π`` as an ``n^l x n^k`` float64 matrix, entry by entry from δ_π(I, J)."""
    idx = all_indices(n, l + k)
    ok = torch.ones(idx.shape[1], dtype=torch.bool)
    for block in blocks:
        ok &= (idx[list(block)] == idx[block[0]]).all(0)
    return ok.double().reshape(n ** l, n ** k)


class PartitionLinear(DiagramLinear):
    """S_n-equivariant ``(R^n)^{⊗k} -> (R^n)^{⊗l}`` layer, one weight matrix per partition diagram."""

    def __init__(self, n: int, k: int, l: int, *, in_channels: int = 1, out_channels: int = 1, bias: bool = True,
                 device=None, dtype=None) -> None:
        check_orders(n, k, l, "PartitionLinear")
        super().__init__(n, k, l, partition_diagrams(n, k, l), in_channels=in_channels, out_channels=out_channels,
                         bias_diagrams=partition_diagrams(n, 0, l) if bias and l > 0 else (),
                         device=device, dtype=dtype)

    def dense(self, d: Partition, k: int | None = None, l: int | None = None) -> torch.Tensor:
        return partition_matrix(d, self.n, self.k if k is None else k, self.l if l is None else l)

    def apply(self, d: Partition, x: torch.Tensor, k: int | None = None, l: int | None = None) -> torch.Tensor:
        k, l = (self.k if k is None else k), (self.l if l is None else l)
        out_legs, in_legs = partition_legs(d, k, l)
        return contract_network(x, self.n, out_legs, in_legs)
