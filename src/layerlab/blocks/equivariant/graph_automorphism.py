"""Aut(G)-equivariant linear layers between tensor powers of R^n from bilabelled graphs.

Paper: Pearce-Crump & Knottenbelt, "Graph Automorphism Group Equivariant Neural Networks", 2023,
arXiv:2307.07810. For a graph G on n vertices (adjacency matrix A_G), Aut(G) acts on
``(R^n)^{⊗k}`` by ``P_σ^{⊗k}``. A (k, l)-bilabelled graph ``H = (H, a, b)`` is a graph H with a
k-tuple a (input labels) and an l-tuple b (output labels) of its vertices (labels may repeat).
Its G-homomorphism matrix counts homomorphisms that agree with the labels:

    X_H[I, J] = #{ φ: V(H) -> V(G) homomorphism : φ(b_t) = i_t, φ(a_y) = j_y },

and ``Hom_{Aut(G)}((R^n)^{⊗k}, (R^n)^{⊗l}) = span{X_H : H a (k, l)-bilabelled graph}`` (a spanning
set, not a basis; for the edgeless graph G it recovers the S_n partition diagrams).

Layer: the spanning set is infinite, so the layer enumerates bilabelled graphs with at most
``max_vertices`` vertices (every labelling and every edge set) and keeps a linearly independent
subset greedily (Gram-Schmidt on the flattened ``X_H``, relative tolerance 1e-9), one
``c_out x c_in`` weight per kept graph: ``y = sum_H λ_H X_H x``. Whether the kept graphs span the
whole commutant is checked by ``spans_commutant()`` against ``dim Hom_{Aut(G)}`` solved numerically
(the tests do, for cycles and paths). Modes: ``"reference"`` (``X_H`` by brute-force homomorphism
counting) and ``"factored"`` (H as a tensor network: its vertices are nodes, every edge an ``A_G``
operand; ``categorification.contract_network``). Initialisation (not in the paper):
``N(0, 1/(c_in · #graphs))``, no bias. Shapes ``(*, c_in, n x k) -> (*, c_out, n x l)``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ...errors import ConfigError
from ...registry import Paper
from ._diagrams import DiagramLinear, all_indices, check_orders, commutant_dim, permutation_matrix, tensor_power
from .categorification import contract_network

GRAPH_AUT_PAPER = Paper("Graph Automorphism Group Equivariant Neural Networks", 2023, "2307.07810")


@dataclass(frozen=True)
class BilabelledGraph:
    """H on vertices ``0..vertices-1`` with ``edges`` (pairs u < w), input labels a, output labels b."""

    vertices: int
    edges: tuple[tuple[int, int], ...]
    inputs: tuple[int, ...]  # a: the vertex of each input index j_1..j_k
    outputs: tuple[int, ...]  # b: the vertex of each output index i_1..i_l


def cycle_graph(n: int) -> torch.Tensor:
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        A[i, (i + 1) % n] = A[(i + 1) % n, i] = 1
    return A


def path_graph(n: int) -> torch.Tensor:
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n - 1):
        A[i, i + 1] = A[i + 1, i] = 1
    return A


def automorphisms(A: torch.Tensor) -> list[list[int]]:
    """Aut(G) by brute force: every permutation σ with ``P_σ A P_σ^T = A`` (n <= 8)."""
    n = A.shape[0]
    if n > 8:
        raise ConfigError(f"automorphisms: brute force over n! permutations needs n <= 8, got n = {n}")
    out = []
    for perm in itertools.permutations(range(n)):
        p = list(perm)
        if torch.equal(A[p][:, p], A):
            out.append(p)
    return out


def homomorphism_matrix(H: BilabelledGraph, A: torch.Tensor) -> torch.Tensor:
    """``X_H`` as an ``n^l x n^k`` float64 matrix: every map φ: V(H) -> [n] is tried (reference)."""
    n, l, k = A.shape[0], len(H.outputs), len(H.inputs)
    phi = all_indices(n, H.vertices)  # (v, n^v)
    weight = torch.ones(phi.shape[1], dtype=torch.float64)
    for u, w in H.edges:
        weight = weight * A.double()[phi[u], phi[w]]
    row = torch.zeros(phi.shape[1], dtype=torch.long)
    for t in H.outputs:
        row = row * n + phi[t]
    col = torch.zeros(phi.shape[1], dtype=torch.long)
    for y in H.inputs:
        col = col * n + phi[y]
    X = torch.zeros(n ** l * n ** k, dtype=torch.float64)
    X.index_add_(0, row * n ** k + col, weight)
    return X.reshape(n ** l, n ** k)


def bilabelled_graphs(k: int, l: int, max_vertices: int) -> list[BilabelledGraph]:
    """Every (k, l)-bilabelled graph on 1..max_vertices vertices (all labellings, all edge sets)."""
    out = []
    for v in range(1, max_vertices + 1):
        pairs = list(itertools.combinations(range(v), 2))
        for labels in itertools.product(range(v), repeat=k + l):
            for mask in range(2 ** len(pairs)):
                edges = tuple(p for i, p in enumerate(pairs) if mask >> i & 1)
                out.append(BilabelledGraph(v, edges, tuple(labels[l:]), tuple(labels[:l])))
    return out


def independent_subset(mats: list[torch.Tensor], tol: float = 1e-9) -> list[int]:
    """Indices of a maximal linearly independent subset, greedily in order (Gram-Schmidt)."""
    basis: list[torch.Tensor] = []
    keep = []
    for i, M in enumerate(mats):
        r = M.reshape(-1).double().clone()
        norm = r.norm()
        if norm == 0:
            continue
        for q in basis:
            r -= (q @ r) * q
        for q in basis:  # second pass for stability
            r -= (q @ r) * q
        if r.norm() > tol * norm:
            basis.append(r / r.norm())
            keep.append(i)
    return keep


def automorphism_constraints(A: torch.Tensor, k: int, l: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(tensor_power(permutation_matrix(p), l), tensor_power(permutation_matrix(p), k)) for p in automorphisms(A)]


class GraphAutomorphismLinear(DiagramLinear):
    """Aut(G)-equivariant ``(R^n)^{⊗k} -> (R^n)^{⊗l}`` layer, one weight per kept bilabelled graph."""

    def __init__(self, adjacency: torch.Tensor, k: int, l: int, *, max_vertices: int = 3, in_channels: int = 1,
                 out_channels: int = 1, device=None, dtype=None) -> None:
        A = torch.as_tensor(adjacency, dtype=torch.float64)
        if A.dim() != 2 or A.shape[0] != A.shape[1] or not torch.equal(A, A.T) or \
                not bool(((A == 0) | (A == 1)).all()) or bool(A.diagonal().any()):
            raise ConfigError("GraphAutomorphismLinear: adjacency must be a symmetric 0/1 matrix with a zero "
                              "diagonal (a simple undirected graph); pass e.g. cycle_graph(n)")
        n = A.shape[0]
        check_orders(n, k, l, "GraphAutomorphismLinear")
        if isinstance(max_vertices, bool) or not isinstance(max_vertices, int) or not 1 <= max_vertices <= 5:
            raise ConfigError(f"GraphAutomorphismLinear: max_vertices must be an integer in [1, 5] (the enumeration "
                              f"grows as v^(k+l) 2^(v(v-1)/2)), got {max_vertices!r}")
        candidates = bilabelled_graphs(k, l, max_vertices)
        keep = independent_subset([homomorphism_matrix(H, A) for H in candidates])
        self.max_vertices = max_vertices
        super().__init__(n, k, l, [candidates[i] for i in keep], in_channels=in_channels,
                         out_channels=out_channels, device=device, dtype=dtype)
        self.register_buffer("adjacency", A.to(dtype=dtype or torch.get_default_dtype(), device=device))

    def dense(self, d: BilabelledGraph, k: int | None = None, l: int | None = None) -> torch.Tensor:
        return homomorphism_matrix(d, self.adjacency)

    def apply(self, d: BilabelledGraph, x: torch.Tensor, k: int | None = None, l: int | None = None) -> torch.Tensor:
        labelled = set(d.inputs) | set(d.outputs) | {v for e in d.edges for v in e}
        free = [v for v in range(d.vertices) if v not in labelled]
        return contract_network(x, self.n, list(d.outputs), list(d.inputs),
                                [(self.adjacency, list(e)) for e in d.edges], free)

    def spans_commutant(self) -> bool:
        """Do the kept graphs span ``Hom_{Aut(G)}`` (dimension solved numerically)?"""
        return len(self.diagrams) == commutant_dim(automorphism_constraints(self.adjacency.double(), self.k, self.l))


def orbit_count(A: torch.Tensor, order: int) -> int:
    """Number of Aut(G) orbits on ``[n]^order`` by Burnside: the mean over σ of ``fix(σ)^order``,
    the dimension of ``Hom_{Aut(G)}`` for k + l = order (exact integer arithmetic)."""
    auts = automorphisms(A)
    total = sum(sum(p[i] == i for i in range(len(p))) ** order for p in auts)
    return total // len(auts)
