"""Shared machinery of the diagram layers: set partitions, the diagram layer, group actions on
tensor powers and the numerical commutant.

A (k, l)-diagram is a set partition of the l + k vertices ``0..l-1`` (top row, the output indices
``i_1..i_l``) and ``l..l+k-1`` (bottom row, the input indices ``j_1..j_k``). A layer
``(R^n)^{⊗k} -> (R^n)^{⊗l}`` with one weight per diagram d is

    W = sum_d lambda_d M_d,      (W v)_I = sum_J W[I, J] v_J,

applied channel-wise: ``x`` of shape ``(*, c_in, n, ..., n)`` (k axes of size n) maps to
``(*, c_out, n, ..., n)`` (l axes), with ``lambda_d`` a ``c_out x c_in`` matrix per diagram. Each
family (partition, Brauer, jellyfish, bilabelled graph) supplies its matrices ``M_d`` entry by entry
(the reference form, ``mode="reference"``: the dense ``n^l x n^k`` matrix and a matrix product) and a
factored form (``mode="factored"``: the diagram read as a tensor network and contracted without ever
forming ``M_d``, see ``categorification.py``).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ...errors import ConfigError, ShapeError

Block = tuple[int, ...]
Partition = tuple[Block, ...]


def set_partitions(m: int) -> Iterator[Partition]:
    """Every set partition of ``{0, ..., m-1}`` (restricted growth strings), blocks sorted."""
    if m == 0:
        yield ()
        return

    def grow(i: int, labels: list[int], top: int) -> Iterator[list[int]]:
        if i == m:
            yield labels
            return
        for b in range(top + 2):
            yield from grow(i + 1, labels + [b], max(top, b))

    for labels in grow(1, [0], 0):
        blocks: dict[int, list[int]] = {}
        for v, b in enumerate(labels):
            blocks.setdefault(b, []).append(v)
        yield tuple(tuple(blocks[b]) for b in sorted(blocks))


def bell(m: int) -> int:
    """Bell number B(m) by the Bell triangle (exact integers)."""
    row = [1]
    for _ in range(m):
        nxt = [row[-1]]
        for x in row:
            nxt.append(nxt[-1] + x)
        row = nxt
    return row[0]


def stirling2(m: int, t: int) -> int:
    """Stirling number of the second kind S(m, t): partitions of an m-set into exactly t blocks."""
    return sum((-1) ** (t - j) * math.comb(t, j) * j ** m for j in range(t + 1)) // math.factorial(t)


def all_indices(n: int, m: int) -> torch.Tensor:
    """The ``(m, n^m)`` integer table of every index tuple in [n]^m, row-major order."""
    if m == 0:
        return torch.zeros(0, 1, dtype=torch.long)
    grids = torch.meshgrid(*[torch.arange(n)] * m, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids])


def check_orders(n: int, k: int, l: int, where: str) -> None:
    for name, v, lo in (("n", n, 1), ("k", k, 0), ("l", l, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{where}: {name} must be an integer >= {lo}, got {v!r}")
    if n ** (k + l) > 2 ** 22:
        raise ConfigError(f"{where}: n^(k+l) = {n}^{k + l} entries is too large for a dense weight matrix; "
                          f"use smaller n, k or l")


# ---- group actions on tensor powers ---------------------------------------------------------
def act(g: torch.Tensor, x: torch.Tensor, order: int) -> torch.Tensor:
    """``g^{⊗order}`` applied to the last ``order`` axes of ``x`` (each of size n)."""
    for a in range(order):
        axis = x.dim() - order + a
        x = torch.movedim(torch.tensordot(x, g, dims=([axis], [1])), -1, axis)
    return x


def permutation_matrix(perm: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``P`` with ``P[perm[j], j] = 1``: the permutation representation, ``P e_j = e_{perm(j)}``."""
    n = len(perm)
    P = torch.zeros(n, n, dtype=dtype)
    P[torch.as_tensor(list(perm)), torch.arange(n)] = 1
    return P


def tensor_power(g: torch.Tensor, order: int) -> torch.Tensor:
    out = torch.ones(1, 1, dtype=g.dtype)
    for _ in range(order):
        out = torch.kron(out, g)
    return out


def lie_power(X: torch.Tensor, order: int) -> torch.Tensor:
    """The derivative of ``g^{⊗order}`` along X: ``sum_a I ⊗ .. ⊗ X (slot a) ⊗ .. ⊗ I``."""
    n = X.shape[0]
    eye = torch.eye(n, dtype=X.dtype)
    out = torch.zeros(n ** order, n ** order, dtype=X.dtype)
    for a in range(order):
        term = torch.ones(1, 1, dtype=X.dtype)
        for b in range(order):
            term = torch.kron(term, X if a == b else eye)
        out += term
    return out


def commutant_dim(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, tol: float = 1e-8) -> int:
    """Dimension of ``{W : R_l W = W R_k for every (R_l, R_k) in pairs}``, solved numerically.

    With row-major ``vec``, ``vec(R_l W - W R_k) = (R_l ⊗ I - I ⊗ R_k^T) vec(W)``; the dimension is
    the nullity of the stacked constraints, read from the eigenvalues of ``sum C^T C`` (relative
    tolerance ``tol``). ``pairs`` holds group generators (``g^{⊗l}, g^{⊗k}``) or Lie algebra elements
    (their derivations), which give the same commutant for a connected group.
    """
    R_l, R_k = pairs[0]
    a, b = R_l.shape[0], R_k.shape[0]
    gram = torch.zeros(a * b, a * b, dtype=torch.float64)
    for R_l, R_k in pairs:
        C = torch.kron(R_l.double(), torch.eye(b, dtype=torch.float64)) \
            - torch.kron(torch.eye(a, dtype=torch.float64), R_k.double().T.contiguous())
        gram += C.T @ C
    ev = torch.linalg.eigvalsh(gram)
    scale = max(float(ev.abs().max()), 1.0)
    return int((ev.abs() <= tol * scale).sum())


def matrix_rank(mats: Sequence[torch.Tensor], *, tol: float = 1e-8) -> int:
    """Rank of the span of the given matrices (flattened), relative tolerance ``tol``."""
    if not mats:
        return 0
    A = torch.stack([m.reshape(-1).double() for m in mats])
    s = torch.linalg.svdvals(A)
    return int((s > tol * max(float(s[0]), 1.0)).sum())


# ---- the layer ------------------------------------------------------------------------------
class DiagramLinear(nn.Module):
    """``y = sum_d lambda_d M_d x`` (+ ``sum_e beta_e b_e``), one ``c_out x c_in`` weight per diagram.

    Subclasses set ``self.diagrams`` (and optionally ``self.bias_diagrams``, the (0, l)-diagrams
    spanning the equivariant biases) and implement ``dense(d)`` (the matrix ``M_d``, reference) and
    ``apply(d, x)`` (``M_d`` applied to the last k axes of x, factored).

    Initialisation (the papers give none): ``lambda ~ N(0, 1 / (c_in * D))`` with D the number of
    diagrams, so each output entry starts at unit scale for unit-scale inputs; biases start at zero.
    """

    def __init__(self, n: int, k: int, l: int, diagrams: Sequence, *, in_channels: int = 1, out_channels: int = 1,
                 bias_diagrams: Sequence = (), device=None, dtype=None) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{type(self).__name__}: {name} must be an integer >= 1, got {v!r}")
        if not diagrams:
            raise ConfigError(f"{type(self).__name__}: no diagram spans this space for n={n}, k={k}, l={l} "
                              f"(the only equivariant map is 0); choose other orders")
        self.n, self.k, self.l = n, k, l
        self.in_channels, self.out_channels = in_channels, out_channels
        self.diagrams = list(diagrams)
        self.bias_diagrams = list(bias_diagrams)
        kw = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(len(self.diagrams), out_channels, in_channels, **kw))
        self.bias = nn.Parameter(torch.zeros(len(self.bias_diagrams), out_channels, **kw)) if self.bias_diagrams else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(self.in_channels * len(self.diagrams)))
            if self.bias is not None:
                self.bias.zero_()

    # subclasses
    def dense(self, d, k: int | None = None, l: int | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def apply(self, d, x: torch.Tensor, k: int | None = None, l: int | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def weight_matrix(self) -> torch.Tensor:
        """The dense ``(c_out n^l) x (c_in n^k)`` matrix ``sum_d lambda_d ⊗ M_d`` (reference)."""
        W = 0
        for lam, d in zip(self.weight, self.diagrams):
            W = W + torch.kron(lam, self.dense(d).to(lam))
        return W

    def _check(self, x: torch.Tensor) -> None:
        want = (self.in_channels,) + (self.n,) * self.k
        if x.dim() < len(want) or tuple(x.shape[x.dim() - len(want):]) != want:
            raise ShapeError(f"{type(self).__name__}: expected input (*, in_channels, n x {self.k}) = (*, "
                             f"{', '.join(map(str, want))}), got {tuple(x.shape)}; reshape the input "
                             f"or build the layer with matching n, k and in_channels")

    def forward(self, x: torch.Tensor, mode: str = "factored") -> torch.Tensor:
        self._check(x)
        lead = x.shape[: x.dim() - 1 - self.k]
        n, k, l = self.n, self.k, self.l
        if mode == "reference":
            y = x.reshape(*lead, self.in_channels * n ** k) @ self.weight_matrix().T
            y = y.reshape(*lead, self.out_channels, *(n,) * l)
        elif mode == "factored":
            y = 0
            for lam, d in zip(self.weight, self.diagrams):
                z = self.apply(d, x)  # (*, c_in, n^l axes)
                y = y + torch.einsum("oc,...c->...o", lam, z.movedim(-l - 1, -1)).movedim(-1, -l - 1)
        else:
            raise ConfigError(f"{type(self).__name__}: unknown mode {mode!r}; valid modes: 'factored', 'reference'")
        if self.bias is not None:
            if getattr(self, "_bias_basis", None) is None:  # the (0, l)-diagram tensors, built once
                self._bias_basis = torch.stack([self.dense(e, 0, l).reshape((n,) * l) for e in self.bias_diagrams])
            basis = self._bias_basis.to(y)
            y = y + torch.einsum("eo,e...->o...", self.bias, basis)
        return y

    def extra_repr(self) -> str:
        return (f"n={self.n}, k={self.k}, l={self.l}, in_channels={self.in_channels}, out_channels="
                f"{self.out_channels}, diagrams={len(self.diagrams)}, bias={self.bias is not None}")


def index_letters() -> Iterator[str]:
    return iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

