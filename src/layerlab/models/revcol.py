r"""Reversible Column Networks (RevCol): columns of multi-level subnetworks joined by reversible connections.

Paper: Cai, Zhou, Fang, Zhang, Zhang & Li (Megvii), "Reversible Column Networks", 2022 (ICLR 2023),
arXiv:2212.11696.

``N`` columns share one input ``x_0`` (the stem's output); column ``i`` has ``L`` levels. Level ``l``
of column ``i`` fuses the level below in the same column and the level above in the previous
column, plus a reversible (channel-wise scaling) copy of its own level in the previous column::

    x_l^i = F_l(x_{l-1}^i, x_{l+1}^{i-1}) + γ_l ⊙ x_l^{i-1},     x_0^i = x_0,  x_{L+1}^{i-1} := none,
    x_l^0 = 0

(the paper's multi-level reversible unit ``x_t = F_t(x_{t-1}, x_{t-m+1}) + γ x_{t-m}``). Since
``F_l`` only reads levels that are known once the next column is, the previous column is recovered
top level first::

    x_l^{i-1} = γ_l^{-1} ⊙ (x_l^i - F_l(x_{l-1}^i, x_{l+1}^{i-1})),   l = L, L-1, ..., 1

so training need not store any column's activations: ``RevCol(..., reversible=True)`` keeps only the
last column and ``x_0`` and, in the backward pass, recomputes each column from the next one
(``_ReversibleColumns``); ``reversible=False`` is the plain autograd form that stores everything.

Here the levels are feature vectors of width ``d`` (the paper: feature maps at L resolutions with
ConvNeXt blocks, up/down-sampling fusion); ``F_l(a, b) = W_2 GELU(W_1 [LN(a), LN(b)])`` (``b``
absent at the top level). ``γ_l`` is a learnable per-channel scale, kept away from 0 as
``sign(γ) max(|γ|, γ_min)`` (``γ_min = 1e-3``) so the inverse exists; init 0.5 (our choice).
Output: ``head(LN(x_L^N))``. Deviations: no intermediate supervision, no down/up-sampling, no drop path.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


class Fusion(nn.Module):
    """F_l(a, b) = W_2 GELU(W_1 [LN(a), LN(b)]), or of LN(a) alone at the top level."""

    def __init__(self, d: int, *, top: bool, expansion: int = 2, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.top = top
        self.norm_a = nn.LayerNorm(d, dtype=dtype)
        self.norm_b = None if top else nn.LayerNorm(d, dtype=dtype)
        self.fc1 = nn.Linear(d if top else 2 * d, expansion * d, dtype=dtype)
        self.fc2 = nn.Linear(expansion * d, d, dtype=dtype)

    def forward(self, a: Tensor, b: Tensor | None) -> Tensor:
        z = self.norm_a(a) if self.top else torch.cat([self.norm_a(a), self.norm_b(b)], dim=-1)
        return self.fc2(nn.functional.gelu(self.fc1(z)))


class Column(nn.Module):
    """One column: levels 1..L from the shared input and the previous column's levels."""

    def __init__(self, d: int, levels: int, *, gamma_init: float = 0.5, gamma_min: float = 1e-3,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.levels, self.gamma_min = levels, gamma_min
        self.fusions = nn.ModuleList(Fusion(d, top=(l == levels - 1), dtype=dtype) for l in range(levels))
        self.gamma = nn.Parameter(torch.full((levels, d), float(gamma_init), dtype=dtype))

    def scales(self) -> Tensor:
        g = self.gamma
        return torch.where(g >= 0, 1.0, -1.0).to(g.dtype) * g.abs().clamp(min=self.gamma_min)

    def forward(self, x0: Tensor, prev: list[Tensor]) -> list[Tensor]:
        g, out, below = self.scales(), [], x0
        for l, f in enumerate(self.fusions):
            above = prev[l + 1] if l + 1 < self.levels else None
            below = f(below, above) + g[l] * prev[l]
            out.append(below)
        return out

    def inverse(self, x0: Tensor, cur: list[Tensor]) -> list[Tensor]:
        """The previous column's levels from this column's, top level first."""
        g, prev = self.scales(), [None] * self.levels
        for l in reversed(range(self.levels)):
            below = x0 if l == 0 else cur[l - 1]
            above = prev[l + 1] if l + 1 < self.levels else None
            prev[l] = (cur[l] - self.fusions[l](below, above)) / g[l]
        return prev


class _ReversibleColumns(torch.autograd.Function):
    """Runs the columns without storing activations; the backward recomputes them column by column."""

    @staticmethod
    def forward(ctx, x0: Tensor, columns: nn.ModuleList, n_levels: int, *params: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad():
            levels = [torch.zeros_like(x0) for _ in range(n_levels)]
            for col in columns:
                levels = col(x0, levels)
        ctx.columns, ctx.n_params = columns, len(params)
        ctx.save_for_backward(x0, *levels)
        return tuple(levels)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        x0, *levels = ctx.saved_tensors
        columns = ctx.columns
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, levels)]
        g_x0 = torch.zeros_like(x0)
        param_grads: dict[int, Tensor] = {}
        for i in reversed(range(len(columns))):
            col = columns[i]
            with torch.no_grad():  # the first column's input levels are known exactly: zeros
                prev = col.inverse(x0, levels) if i > 0 else [torch.zeros_like(x0) for _ in levels]
            with torch.enable_grad():
                x0_ = x0.detach().requires_grad_(True)
                prev_ = [p.detach().requires_grad_(True) for p in prev]
                cur = col(x0_, prev_)
                ps = [p for p in col.parameters() if p.requires_grad]
                got = torch.autograd.grad(cur, [x0_, *prev_, *ps], grads, allow_unused=True)
            g_x0 = g_x0 + got[0]
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(got[1:1 + len(prev_)], prev_)]
            for p, g in zip(ps, got[1 + len(prev_):]):
                if g is not None:
                    param_grads[id(p)] = param_grads.get(id(p), 0) + g
            levels = prev
        all_params = [p for col in columns for p in col.parameters() if p.requires_grad]
        return (g_x0, None, None, *[param_grads.get(id(p)) for p in all_params])


class RevCol(nn.Module):
    """``N`` reversible columns of ``L`` levels on vector inputs: ``(B, d_in) -> (B, n_out)``."""

    def __init__(self, d_in: int, d: int, n_out: int, *, columns: int = 4, levels: int = 3, reversible: bool = True,
                 gamma_init: float = 0.5, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if min(d_in, d, n_out, columns, levels) < 1:
            raise ConfigError(f"RevCol: d_in, d, n_out, columns, levels must be >= 1, got {d_in}, {d}, {n_out}, "
                              f"{columns}, {levels}")
        if gamma_init == 0:
            raise ConfigError("RevCol: gamma_init must be nonzero (the reversible connection divides by gamma)")
        self.d_in, self.levels, self.reversible = d_in, levels, bool(reversible)
        self.stem = nn.Linear(d_in, d, dtype=dtype)
        self.columns = nn.ModuleList(Column(d, levels, gamma_init=gamma_init, dtype=dtype) for _ in range(columns))
        self.norm = nn.LayerNorm(d, dtype=dtype)
        self.head = nn.Linear(d, n_out, dtype=dtype)

    def column_levels(self, x: Tensor) -> list[Tensor]:
        """Every level of the last column."""
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ShapeError(f"RevCol expects input of shape (B, d_in = {self.d_in}), got {tuple(x.shape)}")
        x0 = self.stem(x)
        if self.reversible and torch.is_grad_enabled():
            params = [p for col in self.columns for p in col.parameters() if p.requires_grad]
            return list(_ReversibleColumns.apply(x0, self.columns, self.levels, *params))
        levels = [torch.zeros_like(x0) for _ in range(self.levels)]
        for col in self.columns:
            levels = col(x0, levels)
        return levels

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.column_levels(x)[-1]))
