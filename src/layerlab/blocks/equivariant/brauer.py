"""O(n)- and Sp(n)-equivariant linear layers between tensor powers of R^n, one weight per Brauer
diagram.

Paper: Pearce-Crump, "Brauer's Group Equivariant Neural Networks", 2022, arXiv:2212.08630. A
(k, l)-Brauer diagram β is a perfect matching of the l + k vertices (top row: output indices
``i_1..i_l``, bottom row: input indices ``j_1..j_k``); there are ``(l + k - 1)!!`` of them when
l + k is even and none when it is odd. With ``ρ_k(g) = g^{⊗k}``:

- O(n): ``E_β[I, J] = prod_{pairs {x, y} of β} δ(idx_x, idx_y)``;
  ``Hom_{O(n)}((R^n)^{⊗k}, (R^n)^{⊗l}) = span{E_β}``.
- Sp(n), n = 2m, with the form ``ε = [[0, I_m], [-I_m, 0]]``:
  ``F_β[I, J] = prod_{top pairs x<y} ε(i_x, i_y) · prod_{bottom pairs x<y} ε(j_x, j_y) ·
  prod_{pairs across} δ(i_x, j_y)``; ``Hom_{Sp(n)} = span{F_β}``. (The paper writes F_β in the
  symplectic basis of R^n; we keep the standard basis with the form above, which only reorders the
  basis vectors.)

The layer is ``y = sum_β λ_β M_β x`` with ``λ_β`` a ``c_out x c_in`` matrix, no bias (the only
invariant (0, l) tensors are the (0, l)-diagrams themselves; pass them through a (k, l) layer with
k = 0 if wanted). Shapes ``(*, c_in, n x k) -> (*, c_out, n x l)``. Modes: ``"reference"`` (dense
``M_β`` entry by entry) and ``"factored"`` (the diagram as a tensor network: δ is a shared index, ε
an operand; ``categorification.contract_network``). Initialisation (not in the paper):
``λ ~ N(0, 1/(c_in · #diagrams))``. The SO(n) extension (adding the (l+k)\\n-diagrams built from the
determinant) is not implemented.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from ...errors import ConfigError
from ...registry import Paper
from ._diagrams import DiagramLinear, all_indices, check_orders
from .categorification import contract_network

BRAUER_PAPER = Paper("Brauer's Group Equivariant Neural Networks", 2022, "2212.08630")

Pairing = tuple[tuple[int, int], ...]


def perfect_matchings(m: int) -> Iterator[Pairing]:
    """Every perfect matching of ``{0..m-1}`` (none for odd m), pairs (x, y) with x < y."""
    def rec(rest: tuple[int, ...]) -> Iterator[Pairing]:
        if not rest:
            yield ()
            return
        a = rest[0]
        for i in range(1, len(rest)):
            for tail in rec(rest[1:i] + rest[i + 1:]):
                yield ((a, rest[i]),) + tail

    if m % 2 == 0:
        yield from rec(tuple(range(m)))


def double_factorial(m: int) -> int:
    out = 1
    while m > 1:
        out, m = out * m, m - 2
    return out


def symplectic_form(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``ε = [[0, I_m], [-I_m, 0]]`` for n = 2m."""
    m = n // 2
    eps = torch.zeros(n, n, dtype=dtype)
    eps[:m, m:] = torch.eye(m, dtype=dtype)
    eps[m:, :m] = -torch.eye(m, dtype=dtype)
    return eps


def brauer_matrix(beta: Pairing, n: int, k: int, l: int, group: str = "orthogonal") -> torch.Tensor:
    """``E_β`` (orthogonal) or ``F_β`` (symplectic) as an ``n^l x n^k`` float64 matrix, entry by entry."""
    idx = all_indices(n, l + k)
    eps = symplectic_form(n)
    out = torch.ones(idx.shape[1], dtype=torch.float64)
    for x, y in beta:
        same_row = (x < l) == (y < l)
        if group == "symplectic" and same_row:
            out = out * eps[idx[x], idx[y]]
        else:
            out = out * (idx[x] == idx[y]).double()
    return out.reshape(n ** l, n ** k)


class BrauerLinear(DiagramLinear):
    """``(R^n)^{⊗k} -> (R^n)^{⊗l}`` layer equivariant to O(n) (``group="orthogonal"``) or Sp(n)
    (``group="symplectic"``, n even), one weight matrix per Brauer diagram."""

    GROUPS = ("orthogonal", "symplectic")

    def __init__(self, n: int, k: int, l: int, *, group: str = "orthogonal", in_channels: int = 1,
                 out_channels: int = 1, device=None, dtype=None) -> None:
        check_orders(n, k, l, "BrauerLinear")
        if group not in self.GROUPS:
            raise ConfigError(f"BrauerLinear: unknown group {group!r}; valid groups: 'orthogonal' (O(n)), "
                              f"'symplectic' (Sp(n), n even)")
        if group == "symplectic" and n % 2:
            raise ConfigError(f"BrauerLinear: Sp(n) needs an even n = 2m, got n = {n}; use an even n or "
                              f"group='orthogonal'")
        if (k + l) % 2:
            raise ConfigError(f"BrauerLinear: k + l = {k + l} is odd, so there is no Brauer diagram and every "
                              f"{group} equivariant map is 0; choose k + l even")
        self.group = group
        super().__init__(n, k, l, list(perfect_matchings(l + k)), in_channels=in_channels,
                         out_channels=out_channels, device=device, dtype=dtype)

    def dense(self, d: Pairing, k: int | None = None, l: int | None = None) -> torch.Tensor:
        return brauer_matrix(d, self.n, self.k if k is None else k, self.l if l is None else l, self.group)

    def apply(self, d: Pairing, x: torch.Tensor, k: int | None = None, l: int | None = None) -> torch.Tensor:
        k, l = (self.k if k is None else k), (self.l if l is None else l)
        node = {}
        operands = []
        eps = symplectic_form(self.n, x.dtype).to(x.device)
        for p, (a, b) in enumerate(d):
            if self.group == "symplectic" and (a < l) == (b < l):
                node[a], node[b] = (p, 0), (p, 1)
                operands.append((eps, [(p, 0), (p, 1)]))
            else:
                node[a] = node[b] = p
        return contract_network(x, self.n, [node[t] for t in range(l)], [node[l + y] for y in range(k)], operands)


# ---- the groups: random elements and generators of the commutant constraints ------------------
def random_orthogonal(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Haar-random element of O(n): QR of a Gaussian matrix with the signs of diag(R) fixed."""
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def random_symplectic(n: int, generator: torch.Generator | None = None, scale: float = 0.5) -> torch.Tensor:
    """A random element of Sp(n): ``exp(ε S_1) exp(ε S_2)`` with S_i random symmetric (``ε S`` is in sp(n))."""
    eps = symplectic_form(n)
    g = torch.eye(n, dtype=torch.float64)
    for _ in range(2):
        S = torch.randn(n, n, generator=generator, dtype=torch.float64) * scale
        g = g @ torch.linalg.matrix_exp(eps @ (S + S.T) / 2)
    return g


def group_constraints(n: int, k: int, l: int, group: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs ``(R_l, R_k)`` whose common commutant is ``Hom_G``: the Lie algebra basis acting by
    derivations (``E_ij - E_ji`` for o(n), ``ε S_ij`` for sp(n)), plus a reflection for O(n), which is
    not connected (Sp(n) is)."""
    from ._diagrams import lie_power, tensor_power
    pairs = []
    eps = symplectic_form(n)
    for i in range(n):
        for j in range(i, n):
            if group == "orthogonal" and i == j:
                continue
            X = torch.zeros(n, n, dtype=torch.float64)
            X[i, j] += 1
            X[j, i] += -1 if group == "orthogonal" else 1
            if group == "symplectic":
                X = eps @ X
            pairs.append((lie_power(X, l), lie_power(X, k)))
    if group == "orthogonal":
        R = torch.eye(n, dtype=torch.float64)
        R[0, 0] = -1
        pairs.append((tensor_power(R, l), tensor_power(R, k)))
    return pairs
