"""Kolmogorov–Arnold channel mixers: the B-spline KAN and the group-rational KAN of KAT.

Both replace the MLP ``W_2 σ(W_1 x)`` by two layers of learnable univariate functions:

- ``kan``: two B-spline KAN layers (Liu et al. 2024), each a sum over edges of
  ``φ_ij(x_i) = w_b silu(x_i) + w_s Σ_m c_m B_m(x_i)``, computed as one basis expansion of the
  input followed by one matrix product (the SiLU base term is fused into the same product);
- ``grkan``: two group-rational KAN layers (Yang & Wang 2024), ``W F(x)`` with a rational ``F``
  shared by the channels of each group.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper, register
from .mlp import _check_input

__all__ = [
    "GRKAN",
    "GRKANLayer",
    "GroupRational",
    "KAN",
    "KANLayer",
    "b_spline_basis",
    "fitted_rational",
    "group_rational",
    "kan_hidden",
    "rational_second_moment",
    "uniform_grid",
]

KAN_PAPER = Paper("KAN: Kolmogorov-Arnold Networks", 2024, "2404.19756")
KAT_PAPER = Paper("Kolmogorov-Arnold Transformer", 2024, "2409.10594")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float32 or wider: where the basis and the rational functions are evaluated."""
    return torch.promote_types(dtype, torch.float32)


def _factory_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None else torch.get_default_dtype()


# --------------------------------------------------------------------------------------------
# B-splines
# --------------------------------------------------------------------------------------------


def uniform_grid(
    n_in: int,
    grid_size: int,
    spline_order: int,
    grid_range: tuple[float, float],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Knots ``t_0 < ... < t_{G+2k}`` of ``G`` equal intervals over ``grid_range``, extended by
    ``k`` knots of the same spacing on each side, one row per input: ``(n_in, G + 2k + 1)``.
    ``t_k = lo`` and ``t_{G+k} = hi``."""
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, device=device, dtype=torch.float64)
    knots = (lo + h * steps).to(_factory_dtype(dtype))
    return knots.expand(n_in, -1).contiguous()


def _inverse_gaps(grid: Tensor, p: int) -> Tensor:
    """``1 / (t_{j+p} - t_j)`` for ``j = 0..K-1-p``, with 1/0 := 0 (repeated knots): ``(in, K - p)``."""
    gap = grid[:, p:] - grid[:, :-p]
    positive = gap > 0
    return torch.where(positive, 1.0 / torch.where(positive, gap, 1.0), 0.0)


def _cox_de_boor(x: Tensor, grid: Tensor, spline_order: int) -> tuple[Tensor, Tensor]:
    """The B-splines of order ``k - 1`` and ``k`` at ``x`` (no autograd): ``(..., in, G+k+1)``,
    ``(..., in, G+k)``. Knots must be nondecreasing along each row of ``grid``."""
    d = x.unsqueeze(-1) - grid  # x - t_j, (..., in, G+2k+1)
    step = (d >= 0).to(x.dtype)  # 1[t_j <= x], nonincreasing in j
    basis = step[..., :-1] - step[..., 1:]  # B_{j,0} = 1[t_j <= x < t_{j+1}]
    prev = basis
    for p in range(1, spline_order + 1):
        # B_{j,p} = w_{j,p} B_{j,p-1} + (1 - w_{j+1,p}) B_{j+1,p-1},  w_{j,p} = (x - t_j) / (t_{j+p} - t_j)
        n = basis.shape[-1]
        z = (d[..., :n] * _inverse_gaps(grid, p)[:, :n]).mul_(basis)
        prev = basis
        basis = (basis[..., 1:] - z[..., 1:]).add_(z[..., :-1])
    return prev, basis


def _basis_derivative_terms(grid: Tensor, prev: Tensor, k: int) -> Tensor:
    """``k B_{j,k-1}(x) / (t_{j+k} - t_j)`` for ``j = 0..G+k``: ``B'_{j,k} = term_j - term_{j+1}``."""
    return k * prev * _inverse_gaps(grid, k)


class _BSplineBasis(torch.autograd.Function):
    """Cox–de Boor forward without an autograd tape; derivatives by the formula
    ``B'_{j,k} = k B_{j,k-1} / (t_{j+k} - t_j) - k B_{j+1,k-1} / (t_{j+k+1} - t_{j+1})``
    (backward about twice as fast as differentiating through the recursion). Under
    ``create_graph`` the order-(k-1) basis is recomputed through this Function, so higher
    derivatives are exact too; ``jvp`` and a generated vmap rule make it usable in torch.func
    transforms. Outputs ``(basis, prev)``, ``prev`` (order k-1) non-differentiable. The knots
    get no gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, grid: Tensor, spline_order: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        prev, basis = _cox_de_boor(x, grid, spline_order)
        return basis, prev

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def, override]
        x, grid, spline_order = inputs
        _, prev = output
        ctx.mark_non_differentiable(prev)
        ctx.save_for_backward(x, grid, prev)
        ctx.save_for_forward(x, grid, prev)
        ctx.spline_order = spline_order

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_prev: Tensor | None) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        x, grid, prev = ctx.saved_tensors
        k = ctx.spline_order
        if not ctx.needs_input_grad[0]:
            return None, None, None
        if k == 0:  # piecewise constant: zero derivative almost everywhere
            return torch.zeros_like(x), None, None
        if torch.is_grad_enabled():  # double backward: make B_{., k-1} a function of x
            prev = _BSplineBasis.apply(x, grid, k - 1)[0]
        padded = F.pad(grad, (1, 1))
        # sum_j g_j B'_{j,k} = sum_j term_j (g_j - g_{j-1}),  g_{-1} = g_{G+k} = 0
        terms = _basis_derivative_terms(grid, prev, k)
        return (terms * (padded[..., 1:] - padded[..., :-1])).sum(-1), None, None

    @staticmethod
    def jvp(ctx, x_tangent: Tensor, _grid_tangent: Tensor | None, _order_tangent: None) -> tuple[Tensor, None]:  # type: ignore[no-untyped-def, override]
        x, grid, prev = ctx.saved_tensors
        k = ctx.spline_order
        n_basis = grid.shape[-1] - k - 1
        if k == 0:
            return torch.zeros(*x.shape, n_basis, dtype=x.dtype, device=x.device), None
        terms = _basis_derivative_terms(grid, prev, k)
        return (terms[..., :-1] - terms[..., 1:]) * x_tangent.unsqueeze(-1), None


def b_spline_basis(x: Tensor, grid: Tensor, spline_order: int) -> Tensor:
    r"""All B-splines of order ``k = spline_order`` on per-input knots, evaluated at once.

    Cox–de Boor recursion, vectorized over inputs, knots and leading dims (the only loop is over
    the ``k`` levels)::

        B_{j,0}(x) = 1[t_j <= x < t_{j+1}]
        B_{j,p}(x) = (x - t_j)/(t_{j+p} - t_j) B_{j,p-1}(x) + (t_{j+p+1} - x)/(t_{j+p+1} - t_{j+1}) B_{j+1,p-1}(x)

    (a ratio with a zero knot gap counts as 0). Shapes: ``x (..., in)``, ``grid (in, G + 2k + 1)``
    (nondecreasing rows) -> ``(..., in, G + k)``. On ``[t_k, t_{G+k}]`` the basis sums to one
    (partition of unity); outside ``[t_0, t_{G+2k})`` every ``B_m`` is zero. Differentiable in
    ``x`` (any order), not in ``grid``.
    """
    return _BSplineBasis.apply(x, grid, int(spline_order))[0]


def _check_grid_options(name: str, grid_size: int, spline_order: int, grid_range: Sequence[float]) -> None:
    if int(grid_size) != grid_size or grid_size < 1:
        raise ConfigError(f"{name}: grid_size (G, the number of grid intervals) must be an integer >= 1, "
                          f"got {grid_size!r}")
    if int(spline_order) != spline_order or spline_order < 0:
        raise ConfigError(f"{name}: spline_order (k) must be an integer >= 0 (3 = cubic), got {spline_order!r}")
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: grid_range must be a pair (lo, hi) of numbers, got {grid_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{name}: grid_range must be finite with lo < hi, e.g. (-2.0, 2.0); got {grid_range!r}")


class KANLayer(nn.Module):
    r"""One B-spline KAN layer ``Φ: R^in -> R^out`` (Liu et al. 2024, arXiv:2404.19756, Sec. 2.2).

    Equation (output j, sum over the edges i -> j)::

        y_j = Σ_i φ_ij(x_i),   φ_ij(x) = w_b[j,i] silu(x) + w_s[j,i] Σ_{m=0}^{G+k-1} c[j,i,m] B_m(x)

    with ``B_m`` the B-splines of order ``k`` on input i's knots (``grid[i]``), G intervals over
    ``grid_range`` extended by k knots each side. Computed as one basis expansion
    ``(..., in) -> (..., in, G+k)`` (``b_spline_basis``), the features ``[silu(x_i), B_m(x_i)]``
    flattened to ``(..., in (G+k+1))`` and one matrix product with ``[w_b, w_s ⊙ c]``.

    Parameters: ``base_weight`` (w_b, ``(out, in)``), ``spline_scale`` (w_s, ``(out, in)``),
    ``spline_coef`` (c, ``(out, in, G+k)``), optional ``bias`` ``(out,)``; buffer ``grid``
    ``(in, G+2k+1)``. Count: ``out in (G + k + 2)`` (+ ``out`` with bias).

    Initialization (paper Sec. 2.2): ``w_s = 1``, ``c ~ N(0, 0.1^2)`` so that spline(x) ≈ 0,
    ``w_b`` Xavier (Glorot uniform, ``U(±sqrt(6 / (in + out)))``); bias zero.

    Outside ``[t_0, t_{G+2k}]`` every B-spline is zero, so ``φ(x) = w_b silu(x)``: finite and
    linear-like for large inputs. ``update_grid`` moves the knots to the data's quantiles and
    refits ``c`` by least squares (the paper's grid update and grid extension).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_grid_options("KANLayer", grid_size, spline_order, grid_range)
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"KANLayer: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.grid_size, self.spline_order = int(grid_size), int(spline_order)
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        n_basis = self.grid_size + self.spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.spline_scale = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.spline_coef = nn.Parameter(torch.empty(out_features, in_features, n_basis, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        grid_dtype = _compute_dtype(_factory_dtype(dtype))
        self.register_buffer("grid", uniform_grid(in_features, self.grid_size, self.spline_order, self.grid_range,
                                                  device=device, dtype=grid_dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (self.in_features + self.out_features))
        nn.init.uniform_(self.base_weight, -bound, bound)
        nn.init.ones_(self.spline_scale)
        nn.init.normal_(self.spline_coef, std=0.1)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def basis(self, x: Tensor) -> Tensor:
        """B-spline features ``(..., in) -> (..., in, G + k)`` on this layer's knots, in float32 or wider."""
        cdt = _compute_dtype(x.dtype)
        return b_spline_basis(x.to(cdt), self.grid.to(cdt), self.spline_order)

    def fused_weight(self) -> Tensor:
        """``[w_b | w_s ⊙ c]`` as one matrix ``(out, in (G + k + 1))``, matching ``features``."""
        spline = self.spline_scale.unsqueeze(-1) * self.spline_coef
        return torch.cat([self.base_weight.unsqueeze(-1), spline], dim=-1).flatten(1)

    def features(self, x: Tensor) -> Tensor:
        """``[silu(x_i), B_0(x_i), ..., B_{G+k-1}(x_i)]`` for each i, flattened: ``(..., in (G + k + 1))``."""
        cdt = _compute_dtype(x.dtype)
        xc = x.to(cdt)
        basis = b_spline_basis(xc, self.grid.to(cdt), self.spline_order)
        return torch.cat([F.silu(xc).unsqueeze(-1), basis], dim=-1).flatten(-2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"KANLayer expects input of shape (..., {self.in_features}); got {tuple(x.shape)}")
        weight = self.fused_weight()
        y = F.linear(self.features(x).to(weight.dtype), weight, self.bias)
        return y.to(x.dtype)

    @torch.no_grad()
    def update_grid(self, x: Tensor, grid_size: int | None = None, grid_eps: float = 0.02) -> None:
        r"""Move the knots to the data and refit the splines so that each φ_ij is kept on ``x``.

        New inner knots of input i (``G' + 1`` of them, ``G' = grid_size`` or the current G)::

            t' = grid_eps * uniform(min_i, max_i) + (1 - grid_eps) * quantiles_i(0, 1/G', ..., 1)

        of the samples ``x[:, i]``, extended by k knots each side with spacing
        ``(max_i - min_i) / G'``. Then for each edge, by least squares over the samples,
        ``c' = argmin Σ_n (Σ_m c'_m B'_m(x_ni) - Σ_m c_m B_m(x_ni))^2`` — one batched solve over
        inputs (normal equations in float64 with a 1e-10 relative ridge for knot intervals
        without samples). ``w_b``, ``w_s`` and the bias are unchanged, so the layer's output on
        the samples is kept up to the fit residual. A new ``grid_size`` replaces ``spline_coef``
        by a new Parameter (re-create the optimizer afterwards); the same size updates it in place.

        ``x``: ``(..., in)`` with at least ``G' + k`` rows.
        """
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"KANLayer.update_grid expects samples of shape (..., {self.in_features}); "
                             f"got {tuple(x.shape)}")
        new_g = self.grid_size if grid_size is None else grid_size
        _check_grid_options("KANLayer.update_grid", new_g, self.spline_order, self.grid_range)
        new_g = int(new_g)
        if not 0.0 <= grid_eps <= 1.0:
            raise ConfigError(f"KANLayer.update_grid: grid_eps must be in [0, 1] (1 = uniform grid), got {grid_eps}")
        k = self.spline_order
        samples = x.reshape(-1, self.in_features).to(torch.float64)
        n = samples.shape[0]
        if n < new_g + k:
            raise ShapeError(f"KANLayer.update_grid needs at least G + k = {new_g + k} samples to refit "
                             f"{new_g + k} coefficients per edge; got {n}")
        if not torch.isfinite(samples).all():
            raise ValueError("KANLayer.update_grid: the samples contain NaN or infinite values")

        old_basis = b_spline_basis(samples, self.grid.to(torch.float64), k)  # (N, in, G+k)
        target = torch.einsum("nim,oim->ino", old_basis, self.spline_coef.to(torch.float64))  # (in, N, out)

        probs = torch.linspace(0.0, 1.0, new_g + 1, dtype=torch.float64, device=samples.device)
        adaptive = torch.quantile(samples, probs, dim=0).T  # (in, G'+1)
        lo, hi = adaptive[:, :1], adaptive[:, -1:]
        flat = (hi - lo) <= 1e-12 * hi.abs().clamp_min(1.0)  # a constant input: spread the knots around it
        lo, hi = torch.where(flat, lo - 1.0, lo), torch.where(flat, hi + 1.0, hi)
        uniform = lo + (hi - lo) * probs
        adaptive = torch.where(flat, uniform, adaptive)
        inner = grid_eps * uniform + (1.0 - grid_eps) * adaptive
        h = (hi - lo) / new_g
        steps = torch.arange(1, k + 1, dtype=torch.float64, device=samples.device)
        new_grid = torch.cat([lo - h * steps.flip(0), inner, hi + h * steps], dim=1)  # (in, G'+2k+1)

        design = b_spline_basis(samples, new_grid, k).transpose(0, 1)  # (in, N, G'+k)
        gram = design.mT @ design
        ridge = 1e-10 * gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        coef = torch.linalg.solve(gram + ridge[:, None, None] * eye, design.mT @ target)  # (in, G'+k, out)
        coef = coef.permute(2, 0, 1)  # (out, in, G'+k)

        self.grid = new_grid.to(self.grid.dtype)
        if new_g == self.grid_size:
            self.spline_coef.copy_(coef)
        else:
            self.spline_coef = nn.Parameter(coef.to(self.spline_coef.dtype))
            self.grid_size = new_g

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # A state saved after ``update_grid(x, grid_size=G')`` has G' intervals: take its size.
        grid = state_dict.get(prefix + "grid")
        if isinstance(grid, Tensor) and grid.dim() == 2 and grid.shape[1] != self.grid.shape[1]:
            new_g = grid.shape[1] - 2 * self.spline_order - 1
            if new_g >= 1:
                self.grid = torch.empty(grid.shape, dtype=self.grid.dtype, device=self.grid.device)
                self.spline_coef = nn.Parameter(self.spline_coef.new_empty(
                    self.out_features, self.in_features, new_g + self.spline_order))
                self.grid_size = new_g
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}, "
                f"spline_order={self.spline_order}, grid_range={self.grid_range}, bias={self.bias is not None}")


def kan_hidden(d_model: int, grid_size: int = 5, spline_order: int = 3) -> int:
    """Default hidden width of ``kan``: the largest h with ``2 d h (G + k + 2) <= 8 d^2``, the
    parameter count of the (bias-free) expansion-4 MLP; at least 1."""
    return max(1, (4 * d_model) // (grid_size + spline_order + 2))


@register("channel", "kan", paper=KAN_PAPER)
class KAN(nn.Module):
    r"""Two B-spline KAN layers in place of the MLP: ``d_model -> hidden -> d_model``.

    Paper: Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024, arXiv:2404.19756.

    Equation (``KAN(x) = (Φ_1 ∘ Φ_0)(x)``, each ``Φ`` a ``KANLayer``)::

        Φ(x)_j = Σ_i φ_ij(x_i),   φ_ij(x) = w_b silu(x) + w_s Σ_m c_m B_m(x)

    with cubic (``spline_order = 3``) B-splines on ``grid_size = 5`` intervals over
    ``grid_range = (-2, 2)``, extended by k knots on each side.

    Shape: ``(..., D) -> (..., D)``, applied to each position independently.

    Width: ``hidden = floor(4 D / (G + k + 2))`` unless given (``kan_hidden``): the two layers have
    ``2 D hidden (G + k + 2)`` parameters, at most the ``8 D^2`` of the expansion-4 MLP
    (D = 32: hidden 12, 7680 vs 8192 + biases).

    Grid range: the block sits after a norm, so its inputs are roughly unit-variance; (-2, 2)
    holds 95% of a standard normal in the partition-of-unity range, where the splines have full
    resolution (spacing 0.8 at G = 5), and the extension knots still carry partial spline support
    out to ±4.4. Beyond that φ is ``w_b silu(x)`` alone: finite, and still trained through w_b.
    ``update_grid(x)`` adapts the knots to the data (each layer to its own inputs).

    Initialization (paper Sec. 2.2): ``w_s = 1``, spline coefficients ``N(0, 0.1^2)``, ``w_b``
    Xavier uniform; no bias by default (the paper's φ has none).

    Grid update (``update_grid``, paper's grid update / grid extension): measured on 2000
    samples, the refit keeps a layer's spline part to 0.6% (same G, quantile grid, samples inside
    the range) and 0.13% (G 5 -> 10); the whole block at init, N(0, 1) samples, G 5 -> 20 with
    ``grid_eps = 1``: 0.15% of the output. A same-G quantile refit of data that leave the range
    loses more (~10% of the spline part for N(0, 1) samples): the tails get coarser knots.

    Cost: the basis is evaluated without an autograd tape and differentiated by the B-spline
    derivative formula (``_BSplineBasis``); forward + backward at D = 64, batch 256, one CPU
    thread: ~3.6-4.1x the time of an MLP with the same parameter count (8x when differentiating
    through the recursion).

    Options: ``hidden``, ``grid_size`` (G), ``spline_order`` (k), ``grid_range``, ``bias``
    (a learnable bias on each layer's outputs), ``dropout`` (on the block's output), ``device``,
    ``dtype``. The basis is evaluated in float32 or wider; the matrix product runs in the
    parameters' dtype; the output has the input's dtype.

    Differences from the paper: pykan's per-node affine ``subnode`` parameters and the
    sparsification / symbolic machinery are left out; the grid update is a method called by the
    user (the paper updates grids "on the fly" during training).
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        bias: bool = False,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_grid_options("kan", grid_size, spline_order, grid_range)
        if hidden is not None and int(hidden) < 1:
            raise ConfigError(f"kan: hidden must be >= 1 (or None for the MLP-matched default), got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"kan: dropout must be in [0, 1), got {dropout}")
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else kan_hidden(self.d_model, grid_size, spline_order)
        opts = {"grid_size": grid_size, "spline_order": spline_order, "grid_range": tuple(grid_range),
                "bias": bias, "device": device, "dtype": dtype}
        self.layer1 = KANLayer(self.d_model, self.hidden, **opts)
        self.layer2 = KANLayer(self.hidden, self.d_model, **opts)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.layer1.reset_parameters()
        self.layer2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        return self.dropout(self.layer2(self.layer1(x)))

    @torch.no_grad()
    def update_grid(self, x: Tensor, grid_size: int | None = None, grid_eps: float = 0.02) -> None:
        """Update both layers' grids from samples ``x (..., D)``: the first on ``x``, the second
        on the first's (updated) outputs. See ``KANLayer.update_grid``."""
        _check_input(self, x)
        samples = x.reshape(-1, self.d_model)
        self.layer1.update_grid(samples, grid_size=grid_size, grid_eps=grid_eps)
        self.layer2.update_grid(self.layer1(samples), grid_size=grid_size, grid_eps=grid_eps)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"


# --------------------------------------------------------------------------------------------
# Group-rational KAN (KAT)
# --------------------------------------------------------------------------------------------

FIT_RANGE = (-6.0, 6.0)  # KAT fits on [-3, 3]; see fitted_rational for why wider
IDENTITY_EPS = 0.01
_TARGETS = {
    "gelu": lambda x: F.gelu(x),  # exact (erf) GELU, as the "mlp" block
    "swish": F.silu,
}
INITS = ("identity", *_TARGETS)


def _rational_and_jacobian(x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``F = P / (1 + |Q|)`` at ``x (N,)`` and its Jacobian ``(N, m+1+n)`` in ``(a, b)``."""
    powers = x.unsqueeze(-1) ** torch.arange(max(a.numel(), b.numel() + 1), dtype=x.dtype)
    p = powers[:, : a.numel()] @ a
    q = powers[:, 1 : b.numel() + 1] @ b
    den = 1.0 + q.abs()
    d_a = powers[:, : a.numel()] / den[:, None]
    d_b = -(p * torch.sign(q) / den**2)[:, None] * powers[:, 1 : b.numel() + 1]
    return p / den, torch.cat([d_a, d_b], dim=1)


@functools.lru_cache(maxsize=None)
def fitted_rational(target: str, m: int = 5, n: int = 4) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Coefficients ``(a_0..a_m), (b_1..b_n)`` of ``F(x) = P(x) / (1 + |Q(x)|)`` that match
    ``target`` on ``FIT_RANGE = [-6, 6]``. Deterministic, computed once per process.

    KAT fits on [-3, 3]; a GELU fitted there (ours as well as the paper's coefficients) turns
    over just outside it (F(10) ≈ -6 here), which hidden pre-activations reach in training.
    Fitted on [-6, 6], the max error on [-3, 3] is 3.7e-3 (GELU) and 7e-5 (Swish), and the
    tails stay tame (|F(x)| <= 1.01 |x| for 3 <= |x| <= 100; F ~ const * x as |x| -> inf is forced by
    deg P = deg Q + 1).

    - ``"identity"``: exact, ``F(x) = x(1 + ε x^e) / (1 + ε x^e) = x`` with ``e`` the largest even
      power in ``[2, min(n, m - 1)]`` and ``ε = 0.01``: ``Q = ε x^e >= 0`` keeps ``sign(Q) = 1``, so
      the gradient reaches every ``b`` (with ``b = 0`` it would be ``sign(0) = 0`` forever).
    - ``"gelu"`` (exact erf form) and ``"swish"`` (SiLU): least squares on 2001 equispaced points of
      ``[-6, 6]``: first the linearized problem ``P(x) - f(x) Q(x) ≈ f(x)`` (linear in a, b), then
      Levenberg–Marquardt on the true residual ``P / (1 + |Q|) - f`` in float64.
    """
    if target not in INITS:
        raise ConfigError(f"unknown rational init {target!r}; valid: {', '.join(INITS)}")
    a = np.zeros(m + 1)
    b = np.zeros(n)
    if target == "identity":
        a[1] = 1.0
        even = [e for e in range(2, min(n, m - 1) + 1) if e % 2 == 0]
        if even:
            e = even[-1]
            a[e + 1], b[e - 1] = IDENTITY_EPS, IDENTITY_EPS
        return tuple(a.tolist()), tuple(b.tolist())

    x = torch.linspace(*FIT_RANGE, 2001, dtype=torch.float64)
    f = _TARGETS[target](x)
    powers = x.unsqueeze(-1) ** torch.arange(max(m, n) + 1, dtype=torch.float64)
    lin = torch.cat([powers[:, : m + 1], -f[:, None] * powers[:, 1 : n + 1]], dim=1)
    theta = torch.linalg.lstsq(lin, f.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)

    def loss(th: Tensor) -> Tensor:
        val, _ = _rational_and_jacobian(x, th[: m + 1], th[m + 1 :])
        return ((val - f) ** 2).sum()

    lam, best = 1e-3, loss(theta)
    for _ in range(200):
        val, jac = _rational_and_jacobian(x, theta[: m + 1], theta[m + 1 :])
        grad = jac.T @ (val - f)
        jtj = jac.T @ jac
        while lam < 1e12:
            step = torch.linalg.solve(jtj + lam * torch.diag(jtj.diagonal().clamp_min(1e-12)), -grad)
            trial = loss(theta + step)
            if trial < best:
                theta, best, lam = theta + step, trial, max(lam / 3.0, 1e-12)
                break
            lam *= 4.0
        else:
            break
    return tuple(theta[: m + 1].tolist()), tuple(theta[m + 1 :].tolist())


def rational_second_moment(a: Sequence[float], b: Sequence[float], n_points: int = 80) -> float:
    """``E[F(x)^2]`` for ``x ~ N(0, 1)`` by Gauss–Hermite quadrature (float64)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    p = np.polynomial.polynomial.polyval(nodes, np.asarray(a, dtype=np.float64))
    q = np.polynomial.polynomial.polyval(nodes, np.concatenate([[0.0], np.asarray(b, dtype=np.float64)]))
    values = p / (1.0 + np.abs(q))
    return float((weights * values**2).sum() / math.sqrt(2.0 * math.pi))


def group_rational(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    r"""``F_g(x_c) = P_g(x_c) / (1 + |Q_g(x_c)|)`` with the coefficients of channel c's group.

    ``P_g(x) = a_0 + a_1 x + ... + a_m x^m``, ``Q_g(x) = b_1 x + ... + b_n x^n`` (Horner), the C
    channels split into ``g`` contiguous groups of ``C / g``. Shapes: ``x (..., C)``,
    ``numerator (g, m+1)``, ``denominator (g, n)`` -> ``(..., C)``; evaluated in float32 or wider.
    """
    g, c = numerator.shape[0], x.shape[-1]
    cdt = _compute_dtype(x.dtype)
    xg = x.to(cdt).unflatten(-1, (g, c // g))
    a, b = numerator.to(cdt), denominator.to(cdt)
    p = a[:, -1:] * torch.ones_like(xg)
    for k in range(a.shape[1] - 2, -1, -1):
        p = p * xg + a[:, k : k + 1]
    q = b[:, -1:] * torch.ones_like(xg)
    for k in range(b.shape[1] - 2, -1, -1):
        q = q * xg + b[:, k : k + 1]
    return (p / (1.0 + (q * xg).abs())).flatten(-2)


def _check_rational_options(name: str, groups: int, m: int, n: int) -> None:
    if int(groups) != groups or groups < 1:
        raise ConfigError(f"{name}: groups must be an integer >= 1, got {groups!r}")
    if int(m) != m or m < 1 or int(n) != n or n < 1:
        raise ConfigError(f"{name}: the degrees must be integers m >= 1 (numerator) and n >= 1 (denominator); "
                          f"got m={m!r}, n={n!r} (KAT uses m=5, n=4)")


class GroupRational(nn.Module):
    r"""Group-wise rational activation of KAT: channel c goes through ``F_{g(c)}``.

    ``F_g(x) = (a_{g,0} + ... + a_{g,m} x^m) / (1 + |b_{g,1} x + ... + b_{g,n} x^n|)``, the
    "safe" Padé form of the paper (the absolute value of the whole polynomial keeps the
    denominator >= 1: no poles). Channels are split into ``groups`` contiguous groups of
    ``channels / groups`` that share one coefficient set.

    Parameters: ``numerator (groups, m+1)``, ``denominator (groups, n)``, every group initialized
    to ``fitted_rational(init, m, n)``. Shape ``(..., channels) -> (..., channels)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        init: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_rational_options("GroupRational", groups, m, n)
        if channels % groups:
            raise ConfigError(f"GroupRational: channels ({channels}) must be a multiple of groups ({groups})")
        if init not in INITS:
            raise ConfigError(f"GroupRational: unknown init {init!r}; valid: {', '.join(INITS)}")
        factory = {"device": device, "dtype": dtype}
        self.channels, self.groups, self.m, self.n, self.init = int(channels), int(groups), int(m), int(n), init
        self.numerator = nn.Parameter(torch.empty(groups, m + 1, **factory))
        self.denominator = nn.Parameter(torch.empty(groups, n, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        a, b = fitted_rational(self.init, self.m, self.n)
        with torch.no_grad():
            self.numerator.copy_(torch.tensor(a, dtype=torch.float64).expand(self.groups, -1))
            self.denominator.copy_(torch.tensor(b, dtype=torch.float64).expand(self.groups, -1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.channels:
            raise ShapeError(f"GroupRational expects input of shape (..., {self.channels}); got {tuple(x.shape)}")
        return group_rational(x, self.numerator, self.denominator).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, m={self.m}, n={self.n}, init={self.init!r}"


class GRKANLayer(nn.Module):
    r"""One group-rational KAN layer (KAT, arXiv:2409.10594): ``GR-KAN(x) = W F(x) + bias``.

    Per edge ``φ_ij(x_i) = w_ij F_{g(i)}(x_i)``: the rational ``F`` of input i's group, then a
    linear map ``W (out, in)``. Shape ``(..., in) -> (..., out)``.

    Variance-preserving initialization (KAT, Sec. "variance-preserving initialization"): ``F``
    is fitted to ``init``; then ``w ~ N(0, σ^2)`` with ``σ^2 = 1 / (in E[F(x)^2])`` for
    ``x ~ N(0, 1)`` (so ``Var[y] = in σ^2 E[F(x)^2] = Var[x] = 1``); bias zero. For the identity
    ``σ^2 = 1 / in`` (LeCun); for GELU ``E[F^2] ≈ 0.425``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        init: str = "identity",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.rational = GroupRational(in_features, groups=groups, m=m, n=n, init=init, **factory)
        self.linear = nn.Linear(in_features, out_features, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rational.reset_parameters()
        a, b = fitted_rational(self.rational.init, self.rational.m, self.rational.n)
        std = 1.0 / math.sqrt(self.linear.in_features * rational_second_moment(a, b))
        nn.init.normal_(self.linear.weight, std=std)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.rational(x))


@register("channel", "grkan", paper=KAT_PAPER)
class GRKAN(nn.Module):
    r"""Group-rational KAN in place of the MLP: two GR-KAN layers ``d_model -> hidden -> d_model``.

    Paper: Yang & Wang, "Kolmogorov-Arnold Transformer", 2024, arXiv:2409.10594 (KAT).

    Equation (the KAT block's channel mixer)::

        GRKAN(x) = W_2 F_2(W_1 F_1(x) + b_1) + b_2,
        F(x) = (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1 x + ... + b_n x^n|)

    with ``m = 5``, ``n = 4`` and each ``F`` shared within ``groups`` contiguous channel groups
    (``F_1`` over the D input channels, ``F_2`` over the hidden ones).

    Shape: ``(..., D) -> (..., D)``; D and hidden must be multiples of ``groups``
    (``width_multiple``).

    Initialization: ``F_1`` = identity and ``F_2`` = ``activation`` (GELU by default, the ViT
    MLP's, so that at init the block is close to an MLP ``W_2 GELU(W_1 x)`` (0.4% apart); KAT also trains a Swish
    variant: ``activation="swish"``), fitted at construction (``fitted_rational``); linear
    weights ``N(0, 1 / (fan_in E[F(x)^2]))`` for ``x ~ N(0, 1)``, biases zero, so a unit-variance
    input keeps unit variance through each layer. (The authors' code documents
    ``act_init=["identity", "gelu"]`` for this block; their ImageNet scripts train the Swish
    variant.)

    Width: ``hidden = expansion * D`` (default 4, as the MLP) rounded up to a multiple of
    ``groups``, unless ``hidden`` is given: the parameter count is the MLP's plus
    ``2 groups (m + n + 1)`` rational coefficients.

    Cost: forward + backward at D = 64, batch 256, one CPU thread: ~3.7-3.9x the MLP's time (no
    CUDA kernel here: Horner's rule in PyTorch ops, differentiated by autograd).

    Options: ``groups`` (g, 8), ``hidden``, ``expansion``, ``m``, ``n``, ``activation``
    (``"gelu"`` or ``"swish"``), ``bias``, ``dropout`` (on the output), ``device``, ``dtype``.

    Differences from the paper: KAT's identity init has ``b = 0``, whose gradient through
    ``|Q|`` is ``sign(0) = 0`` in PyTorch autograd; here the identity is the exact
    ``x(1 + 0.01 x^4) / (1 + 0.01 x^4)`` so the denominator trains. The coefficients are fitted
    here (least squares + Levenberg–Marquardt on [-6, 6], wider than KAT's [-3, 3] so the
    fitted GELU does not turn over just outside it), not copied; the CUDA kernel is replaced
    by a vectorized Horner evaluation in float32 or wider.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 4.0,
        groups: int = 8,
        m: int = 5,
        n: int = 4,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_rational_options("grkan", groups, m, n)
        if activation not in _TARGETS:
            raise ConfigError(f"grkan: activation must be one of {', '.join(_TARGETS)} "
                              f"(the second rational's init), got {activation!r}")
        if d_model % groups:
            raise ConfigError(f"grkan: d_model ({d_model}) must be a multiple of groups ({groups}); "
                              f"choose groups dividing d_model or d_model = {groups * max(1, round(d_model / groups))}")
        if hidden is not None and (int(hidden) < 1 or hidden % groups):
            raise ConfigError(f"grkan: hidden must be a positive multiple of groups ({groups}), got {hidden}")
        if hidden is None and not expansion > 0:
            raise ConfigError(f"grkan: expansion must be > 0, got {expansion}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"grkan: dropout must be in [0, 1), got {dropout}")
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else groups * math.ceil(max(1, round(expansion * d_model)) / groups)
        opts = {"groups": groups, "m": m, "n": n, "bias": bias, "device": device, "dtype": dtype}
        self.layer1 = GRKANLayer(self.d_model, self.hidden, init="identity", **opts)
        self.layer2 = GRKANLayer(self.hidden, self.d_model, init=activation, **opts)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def width_multiple(cls, *, groups: int = 8, **_: object) -> int:
        return int(groups)

    def reset_parameters(self) -> None:
        self.layer1.reset_parameters()
        self.layer2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        return self.dropout(self.layer2(self.layer1(x)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}"
