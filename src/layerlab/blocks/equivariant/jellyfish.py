"""A_n-equivariant linear layers between tensor powers of R^n: partition diagrams plus jellyfish.

Paper: Pearce-Crump, "How Jellyfish Characterise Alternating Group Equivariant Neural Networks",
2023, arXiv:2301.10152. The alternating group A_n acts on ``(R^n)^{⊗k}`` by ``P_σ^{⊗k}`` (σ even).
Its orbits on ``[n]^{l+k}`` are the S_n orbits, except that the orbit of a set partition with n - 1
or n blocks (index tuples using n - 1 or n distinct values, whose stabiliser in S_n lies in A_n)
splits into two. The extra A_n-equivariant maps come from the determinant map
``det: (R^n)^{⊗n} -> R``, ``e_{a_1} ⊗ .. ⊗ e_{a_n} -> sgn(a)`` (0 unless a is a permutation), which
σ multiplies by ``sgn(σ)``. A jellyfish diagram attaches the n "tentacle" vertices of ``det`` to the
blocks of a set partition π of the l + k vertices with n or n - 1 blocks (blocks ordered by their
smallest vertex, block b on tentacle b; with n - 1 blocks the last tentacle is free and summed):

    H_π[I, J] = sgn(v_1, .., v_n)   if every block b of π has one value v_b, all distinct
                                    (with n - 1 blocks, v_n is the one value not used),  else 0.

Basis (orbit count, checked numerically in the tests): ``{D_π : π has <= n blocks}`` (the S_n
partition diagrams, see partition.py) together with ``{H_π : π has n or n - 1 blocks}``, so

    dim Hom_{A_n} = sum_{t=1}^{n} S(l+k, t) + S(l+k, n) + S(l+k, n-1)

(Stirling numbers of the second kind); for ``n > l + k`` there is no jellyfish and A_n- and
S_n-equivariance coincide. ``H_π`` is equivariant under even permutations and changes sign under
odd ones (anti-equivariant), so a layer that uses it is not S_n-equivariant.

Layer: ``y = sum_π λ_π D_π x + sum_π μ_π H_π x`` (+ bias over the (0, l) diagrams of both kinds),
``c_out x c_in`` weights per diagram, shapes ``(*, c_in, n x k) -> (*, c_out, n x l)``. Modes:
``"reference"`` (dense matrices entry by entry) and ``"factored"`` (the jellyfish as a tensor network
with the determinant tensor as an operand). Initialisation (not in the paper): ``N(0, 1/(c_in D))``.
"""
from __future__ import annotations

import itertools

import torch

from ...errors import ConfigError
from ...registry import Paper
from ._diagrams import DiagramLinear, Partition, all_indices, check_orders, set_partitions
from .categorification import contract_network, partition_legs
from .partition import partition_diagrams, partition_matrix

JELLYFISH_PAPER = Paper("How Jellyfish Characterise Alternating Group Equivariant Neural Networks", 2023, "2301.10152")

Diagram = tuple[str, Partition]  # ("partition" | "jellyfish", blocks)


def jellyfish_diagrams(n: int, k: int, l: int) -> list[Partition]:
    """Set partitions of the l + k vertices with exactly n or n - 1 blocks (n >= 2)."""
    return [p for p in set_partitions(l + k) if len(p) in (n, n - 1) and len(p) >= 1] if n >= 2 else []


def alternating_diagrams(n: int, k: int, l: int) -> list[Diagram]:
    return [("partition", p) for p in partition_diagrams(n, k, l)] + \
        [("jellyfish", p) for p in jellyfish_diagrams(n, k, l)]


def determinant_tensor(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``det[a_1..a_n] = sgn(a)`` for a permutation a of [n], else 0 (n axes of size n)."""
    T = torch.zeros((n,) * n, dtype=dtype)
    for perm in itertools.permutations(range(n)):
        inv = sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))
        T[perm] = -1.0 if inv % 2 else 1.0
    return T


def jellyfish_matrix(blocks: Partition, n: int, k: int, l: int) -> torch.Tensor:
    """``H_π`` as an ``n^l x n^k`` float64 matrix, entry by entry (sign of the block values)."""
    idx = all_indices(n, l + k)
    ok = torch.ones(idx.shape[1], dtype=torch.bool)
    for block in blocks:
        ok &= (idx[list(block)] == idx[block[0]]).all(0)
    vals = torch.stack([idx[b[0]] for b in blocks])  # (#blocks, N)
    if len(blocks) == n - 1:
        vals = torch.cat([vals, (n * (n - 1) // 2 - vals.sum(0, keepdim=True))])
    sorted_vals = vals.sort(0).values
    ok &= (sorted_vals == torch.arange(n).unsqueeze(1)).all(0)  # a permutation of [n]
    inversions = sum((vals[i] > vals[j]).long() for i in range(n) for j in range(i + 1, n))
    sign = 1.0 - 2.0 * (inversions % 2).double()
    return (ok.double() * sign).reshape(n ** l, n ** k)


class AlternatingLinear(DiagramLinear):
    """A_n-equivariant ``(R^n)^{⊗k} -> (R^n)^{⊗l}`` layer: partition diagrams plus jellyfish."""

    def __init__(self, n: int, k: int, l: int, *, in_channels: int = 1, out_channels: int = 1, bias: bool = True,
                 device=None, dtype=None) -> None:
        check_orders(n, k, l, "AlternatingLinear")
        if n > 7:
            raise ConfigError(f"AlternatingLinear: n = {n} makes the n^n determinant tensor too large; use n <= 7 "
                              f"(for n > l + k there is no jellyfish: use PartitionLinear)")
        super().__init__(n, k, l, alternating_diagrams(n, k, l), in_channels=in_channels, out_channels=out_channels,
                         bias_diagrams=alternating_diagrams(n, 0, l) if bias and l > 0 else (),
                         device=device, dtype=dtype)
        self._det = determinant_tensor(n) if n >= 2 else None

    def dense(self, d: Diagram, k: int | None = None, l: int | None = None) -> torch.Tensor:
        k, l = (self.k if k is None else k), (self.l if l is None else l)
        kind, blocks = d
        return (partition_matrix if kind == "partition" else jellyfish_matrix)(blocks, self.n, k, l)

    def apply(self, d: Diagram, x: torch.Tensor, k: int | None = None, l: int | None = None) -> torch.Tensor:
        k, l = (self.k if k is None else k), (self.l if l is None else l)
        kind, blocks = d
        out_legs, in_legs = partition_legs(blocks, k, l)
        if kind == "partition":
            return contract_network(x, self.n, out_legs, in_legs)
        tentacles = list(range(len(blocks))) + (["free"] if len(blocks) == self.n - 1 else [])
        return contract_network(x, self.n, out_legs, in_legs, [(self._det, tentacles)])


def parity(perm: list[int]) -> int:
    """0 for an even permutation, 1 for an odd one."""
    n = len(perm)
    return sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n)) % 2


def random_permutation(n: int, want_parity: int, generator: torch.Generator | None = None) -> list[int]:
    """A uniformly random permutation of the given parity (n >= 2): draw one, swap two entries if needed."""
    perm = torch.randperm(n, generator=generator).tolist()
    if parity(perm) != want_parity:
        perm[0], perm[1] = perm[1], perm[0]
    return perm


def alternating_generators(n: int) -> list[list[int]]:
    """The 3-cycles (0 1 i), i = 2..n-1, which generate A_n (the identity for n <= 2)."""
    gens = []
    for i in range(2, n):
        p = list(range(n))
        p[0], p[1], p[i] = 1, i, 0
        gens.append(p)
    return gens or [list(range(n))]
