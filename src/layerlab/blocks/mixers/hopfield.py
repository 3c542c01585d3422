"""Modern Hopfield networks with continuous states: the associative memory and the causal layer.

Ramsauer et al., "Hopfield Networks is All You Need", 2020, arXiv:2008.02217.

- :func:`hopfield_update`, :func:`hopfield_energy`, :class:`HopfieldMemory`: the associative
  memory of Sec. 2 (energy Eq. 2, update Eq. 3), with stored patterns as the columns of ``X``.
- ``hopfield`` (:class:`HopfieldMixer`): the Hopfield layer of Sec. 3 as a causal mixer whose
  stored patterns at position t are the projected tokens ``0..t``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper, register
from .._common import wide_dtype
from .base import MultiHeadMixer

HOPFIELD = Paper("Hopfield Networks is All You Need", 2020, "2008.02217")


def _check_patterns(X: Tensor, xi: Tensor) -> None:
    if X.dim() != 2:
        raise ShapeError(f"stored patterns X must have shape (d, N) (one pattern per column); got {tuple(X.shape)}")
    if xi.dim() not in (1, 2) or xi.shape[0] != X.shape[0]:
        raise ShapeError(
            f"state pattern xi must have shape (d,) or (d, S) with d = {X.shape[0]} (rows of X); "
            f"got {tuple(xi.shape)}"
        )


def hopfield_update(X: Tensor, xi: Tensor, beta: float) -> Tensor:
    r"""One update of the continuous modern Hopfield network (Eq. 3)::

        ξ_new = X softmax(β Xᵀ ξ)

    ``X`` (d, N): the N stored patterns as columns; ``xi`` (d,) or (d, S): one state pattern or
    S of them as columns (the softmax runs over the N patterns, column by column). The softmax
    is taken in float32 or wider; the result has ``xi``'s dtype.
    """
    _check_patterns(X, xi)
    scores = beta * (X.transpose(0, 1) @ xi)  # (N,) or (N, S)
    p = torch.softmax(scores, dim=0, dtype=wide_dtype(scores.dtype)).to(X.dtype)
    return (X @ p).to(xi.dtype)


def hopfield_energy(X: Tensor, xi: Tensor, beta: float) -> Tensor:
    r"""The energy of Eq. 2::

        E(ξ) = -lse(β, Xᵀ ξ) + ½ ξᵀξ + β⁻¹ log N + ½ M²,   lse(β, z) = β⁻¹ log Σ_i exp(β z_i)

    with ``M = max_i ||x_i||``. ``xi`` (d,) gives a scalar, (d, S) one energy per column.
    The paper shows it is bounded, ``0 <= E <= 2 M²``. Computed in float64.
    """
    _check_patterns(X, xi)
    X64, xi64 = X.to(torch.float64), xi.to(torch.float64)
    N = X.shape[1]
    lse = torch.logsumexp(beta * (X64.transpose(0, 1) @ xi64), dim=0) / beta
    M = X64.norm(dim=0).max()
    return -lse + 0.5 * (xi64 * xi64).sum(dim=0) + math.log(N) / beta + 0.5 * M**2


class HopfieldMemory(nn.Module):
    r"""A continuous modern Hopfield network storing fixed patterns (Ramsauer et al. 2020).

    Paper: "Hopfield Networks is All You Need", 2020, arXiv:2008.02217 (Sec. 2 and its theorems).

    ``HopfieldMemory(X, beta=...)`` stores the columns of ``X`` (d, N) in a buffer;
    ``retrieve(xi, n_updates)`` applies the update ``ξ <- X softmax(β Xᵀ ξ)`` ``n_updates`` times
    (``forward`` is ``retrieve``); ``energy(xi)`` is Eq. 2.

    What the paper proves, and the tests check: the update never increases the energy (it is
    the concave-convex procedure on E, so it converges globally to stationary points); a pattern well separated from the others (separation
    ``Δ_i = x_iᵀx_i - max_{j≠i} x_iᵀx_j``) is retrieved from a nearby query in one update with
    an error exponentially small in ``β Δ_i``, so exponentially many patterns in ``d`` can be
    stored; for ``β -> 0`` the single fixed point is the mean of the
    patterns (the global-averaging regime).

    Shape: ``xi`` (d,) or (d, S) -> same shape.
    """

    def __init__(self, patterns: Tensor, *, beta: float = 1.0) -> None:
        super().__init__()
        if patterns.dim() != 2 or patterns.shape[1] < 1:
            raise ShapeError(f"HopfieldMemory: patterns must have shape (d, N) with N >= 1; got {tuple(patterns.shape)}")
        if not beta > 0:
            raise ConfigError(f"HopfieldMemory: beta must be > 0, got {beta}")
        self.beta = float(beta)
        self.register_buffer("patterns", patterns.detach().clone())

    def update(self, xi: Tensor) -> Tensor:
        return hopfield_update(self.patterns, xi, self.beta)

    def energy(self, xi: Tensor) -> Tensor:
        return hopfield_energy(self.patterns, xi, self.beta)

    def retrieve(self, xi: Tensor, n_updates: int = 1) -> Tensor:
        if int(n_updates) < 0:
            raise ConfigError(f"HopfieldMemory: n_updates must be >= 0, got {n_updates}")
        for _ in range(int(n_updates)):
            xi = self.update(xi)
        return xi

    def forward(self, xi: Tensor, n_updates: int = 1) -> Tensor:
        return self.retrieve(xi, n_updates)

    def extra_repr(self) -> str:
        d, N = self.patterns.shape
        return f"d={d}, N={N}, beta={self.beta}"


@register("mixer", "hopfield", paper=HOPFIELD)
class HopfieldMixer(MultiHeadMixer):
    r"""Causal Hopfield layer: each token's query retrieves from the tokens so far.

    Paper: Ramsauer et al., "Hopfield Networks is All You Need", 2020, arXiv:2008.02217
    (Sec. 3, the layer "Hopfield").

    Equation, per head (``h`` heads of width ``d_k = D / h``), with raw state patterns ``R`` and
    raw stored patterns ``Y`` both the input sequence (self-association)::

        Q = R W_Q,   K = Y W_K,   V = K W_V   (the paper forms the values from the keys: Y W_K W_V)
        Z = softmax(β Q Kᵀ) K W_V,   β = 1/sqrt(d_k)

    made causal: the stored patterns of position ``t`` are ``k_0 .. k_t``. With
    ``n_updates = n`` the update runs ``n`` times in the associative space before the value
    projection::

        ξ_t^(0) = q_t,   ξ_t^(s+1) = K_{≤t}ᵀ softmax(β K_{≤t} ξ_t^(s)),   z_t = W_Vᵀ ξ_t^(n)

    and ``y_t = W_O concat_heads(z_t)``. ``n_updates = 1`` is one step of the memory (Eq. 3),
    i.e. attention with ``V = K W_V``.

    Shape: ``(B, L, D) -> (B, L, D)``, causal. Not recurrent: the memory grows with the sequence.

    Modes: ``"parallel"`` (default): the masked matrix form ``Ξ <- softmax(β Ξ Kᵀ + M) K``
    (``M`` the causal mask) on all positions at once; ``"reference"``: per position ``t`` the
    memory ``HopfieldMemory``'s update over the stored patterns ``k_0..k_t``, written plainly.

    Initialization: ``W_Q, W_K, W_O`` normal with std ``fan_in^-1/2``; each head's ``W_V``
    (d_k x d_k) normal with std ``d_k^-1/2``; biases zero.

    Options: ``n_heads``, ``beta`` (None: ``1/sqrt(d_k)``), ``n_updates`` (>= 1), ``bias``
    (on ``W_Q, W_K, W_O``), ``device``, ``dtype``.

    Differences from the paper: the Hopfield layer of the paper (and its ``hflayers`` package)
    optionally normalizes the patterns with LayerNorm before the update; here the backbone's
    norm precedes the block and no extra normalization is applied. The softmax runs in float32
    or wider.
    """

    modes = ("parallel", "reference")

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        beta: float | None = None,
        n_updates: int = 1,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(n_heads) < 1:
            raise ConfigError(f"hopfield: n_heads must be >= 1, got {n_heads}")
        if d_model % n_heads != 0:
            raise ConfigError(
                f"hopfield: d_model={d_model} is not divisible by n_heads={n_heads}; choose d_model "
                f"a multiple of {n_heads} (e.g. {math.ceil(d_model / n_heads) * n_heads}) or another n_heads"
            )
        if beta is not None and not beta > 0:
            raise ConfigError(f"hopfield: beta must be > 0 (or None for 1/sqrt(d_k)), got {beta}")
        if int(n_updates) < 1:
            raise ConfigError(f"hopfield: n_updates must be >= 1, got {n_updates}")
        factory = {"device": device, "dtype": dtype}
        self.n_heads, self.d_k = int(n_heads), d_model // n_heads
        self.beta = float(beta) if beta is not None else 1.0 / math.sqrt(self.d_k)
        self.n_updates = int(n_updates)
        self.w_q = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.w_k = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.w_v = nn.Parameter(torch.empty(self.n_heads, self.d_k, self.d_k, **factory))
        self.w_o = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w_q, self.w_k, self.w_o):
            nn.init.normal_(linear.weight, std=linear.in_features ** -0.5)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        nn.init.normal_(self.w_v, std=self.d_k ** -0.5)

    def _qk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, D) -> Q, K each (B, h, L, d_k)."""
        B, L, _ = x.shape
        q = self.w_q(x).view(B, L, self.n_heads, self.d_k).transpose(1, 2)
        k = self.w_k(x).view(B, L, self.n_heads, self.d_k).transpose(1, 2)
        return q, k

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        q, k = self._qk(x)
        if mode == "parallel":
            future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(diagonal=1)
            xi = q
            for _ in range(self.n_updates):
                scores = (self.beta * (xi @ k.transpose(-2, -1))).masked_fill(future, float("-inf"))
                xi = torch.softmax(scores, dim=-1, dtype=wide_dtype(x.dtype)).to(x.dtype) @ k
        else:
            rows = []
            for t in range(L):
                per_head = []
                for b in range(B):
                    heads = []
                    for i in range(self.n_heads):
                        memory = k[b, i, : t + 1].transpose(0, 1)  # X: (d_k, t+1), patterns k_0..k_t
                        state = q[b, i, t]
                        for _ in range(self.n_updates):
                            state = hopfield_update(memory, state, self.beta)
                        heads.append(state)
                    per_head.append(torch.stack(heads))
                rows.append(torch.stack(per_head))
            xi = torch.stack(rows, dim=2)  # (B, h, L, d_k)
        z = xi @ self.w_v.unsqueeze(0)  # per head: ξ W_V, (B, h, L, d_k)
        return self.w_o(z.transpose(1, 2).reshape(B, L, D))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, beta={self.beta:.4g}, "
                f"n_updates={self.n_updates}")
