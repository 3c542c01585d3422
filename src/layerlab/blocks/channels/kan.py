"""The B-spline Kolmogorov–Arnold network (KAN) as a channel mixer.

Two KAN layers replace the MLP ``W_2 σ(W_1 x)``; each is a sum over edges of learnable univariate
functions ``φ_ij(x_i) = w_b silu(x_i) + w_s Σ_m c_m B_m(x_i)`` (Liu et al. 2024). The reference
form (``mode="reference"``) computes the B-splines by the Cox–de Boor recursion under autograd
and sums over the edges as written; the fast form (default) builds the features
``[silu(x_i), B_m(x_i)]`` and does one matrix product. On uniform knots (the default grid) and
``2 <= k <= 5`` the features come from the k + 1 polynomial pieces of the cardinal B-spline, by
a C++ kernel (``layerlab.kernels.bspline``) or, where it is not built, by PyTorch ops; on other
grids and orders, from the recursion without an autograd tape, differentiated by the B-spline
derivative formula. The group-rational KAN of KAT is in ``grkan.py``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...kernels import bspline as bspline_kernel
from ...registry import Paper, register
from .._common import WideBuffers, check_last_dim, wide_dtype
from ._two_layer import TwoLayerChannel

__all__ = [
    "KAN",
    "KANLayer",
    "MODES",
    "b_spline_basis",
    "b_spline_basis_reference",
    "b_spline_basis_uniform",
    "kan_hidden",
    "uniform_grid",
    "uniform_inv_spacing",
]

KAN_PAPER = Paper("KAN: Kolmogorov-Arnold Networks", 2024, "2404.19756")
MODES = ("fast", "reference")


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
    ``(..., in, G+k)``. Knots must be nondecreasing along each row of ``grid``. The fast form of
    ``b_spline_basis_reference``: one cumulative step function for order 0, in-place updates."""
    d = x.unsqueeze(-1) - grid  # x - t_j, (..., in, G+2k+1)
    step = (d >= 0).to(x.dtype)  # 1[t_j <= x], nonincreasing in j
    basis = step[..., :-1] - step[..., 1:]  # B_{j,0} = 1[t_j <= x < t_{j+1}]
    if spline_order == 0:  # the last interval is closed: x = t_G (= hi) belongs to it
        last = step[..., -2] * (d[..., -1] <= 0).to(x.dtype)
        basis = torch.cat([basis[..., :-1], last.unsqueeze(-1)], dim=-1)
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


# Uniform knots: the k + 1 polynomial pieces of the cardinal B-spline (the fast form for 2 <= k <= 5).

UNIFORM_ORDERS = range(2, 6)


@functools.lru_cache(maxsize=None)
def _piece_coefficients(k: int) -> tuple[tuple[float, ...], ...]:
    """``M[j][q]``: on knot interval ``[t_i, t_{i+1})`` with local coordinate ``s = (x - t_i)/h``,
    ``B_{i-q,k}(x) = Σ_j M[j][q] s^j`` (q = 0..k). From the truncated-power form of the cardinal
    B-spline, ``N_k(t) = (1/k!) Σ_{r=0}^{k+1} (-1)^r C(k+1, r) (t - r)_+^k`` on ``t ∈ [0, k+1)``
    (de Boor, "A Practical Guide to Splines", 1978), at ``t = q + s``, expanded in s; exact
    rationals, rounded once."""
    rows = []
    for j in range(k + 1):
        rows.append(tuple(float(sum(Fraction((-1) ** r * math.comb(k + 1, r) * math.comb(k, j) * (q - r) ** (k - j),
                                             math.factorial(k)) for r in range(q + 1))) for q in range(k + 1)))
    return tuple(rows)


@functools.lru_cache(maxsize=64)
def _pieces(k: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Rows ``M[j]`` (coefficient of s^j of the k + 1 pieces, ``(k+1, k+1)``) and the rows of the
    s-derivative, ``M'[j] = (j + 1) M[j + 1]`` (``(k, k+1)``)."""
    m = torch.tensor(_piece_coefficients(k), dtype=torch.float64)
    slope = m[1:] * torch.arange(1, k + 1, dtype=torch.float64).unsqueeze(1)
    return m.to(device=device, dtype=dtype), slope.to(device=device, dtype=dtype)


def _horner(rows: Tensor, s: Tensor) -> Tensor:
    """``Σ_j rows[j] s^j`` for each of the pieces: ``s (..., 1)`` -> ``(..., k+1)``."""
    acc = rows[-1].expand(*s.shape[:-1], rows.shape[-1])
    for j in range(rows.shape[0] - 2, -1, -1):
        acc = torch.addcmul(rows[j], acc, s)
    return acc


def _local_pieces(x: Tensor, knots: Tensor, inv_h: Tensor, k: int, n_basis: int,
                  slopes_only: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
    """For each input the k + 1 B-splines that can be non-zero at x, ``B_{i-q}`` (q = 0..k) on
    knot interval i of ``knots (in, n_basis + k + 1)`` (uniform, spacing ``1 / inv_h``): their
    indices ``(..., in, k+1)`` (clamped into ``0..n_basis-1``), values and x-derivatives (both
    zero where the unclamped index is out of range, i.e. x is outside the extended grid).
    Differentiable ops in x (the interval index has zero derivative)."""
    u = (x - knots[:, 0]) * inv_h
    interval = u.detach().clamp(-1.0, float(n_basis + k)).floor().to(torch.int64)
    # s from the interval's own knot, not from t_0: x - t_i loses fewer digits than x - t_0
    knot = knots.expand(*x.shape, knots.shape[-1]).gather(-1, interval.clamp(0, n_basis + k).unsqueeze(-1))
    s = (x.unsqueeze(-1) - knot) * inv_h.unsqueeze(-1)  # in [0, 1) where it matters, (..., in, 1)
    s = s.clamp(-1.0, 2.0)  # far outside the grid: keeps s^k finite (those values are masked)
    m_val, m_slope = _pieces(k, x.dtype, x.device)
    index = interval.unsqueeze(-1) - torch.arange(k + 1, device=x.device)
    clamped = index.clamp(0, n_basis - 1)
    valid = (clamped == index).to(x.dtype)
    slopes = _horner(m_slope, s) * (valid * inv_h.unsqueeze(-1))
    values = None if slopes_only else _horner(m_val, s) * valid
    return clamped, values, slopes


def _silu_slope(x: Tensor) -> Tensor:
    sig = torch.sigmoid(x)
    return sig * (1.0 + x * (1.0 - sig))


class _UniformBSplineFeatures(torch.autograd.Function):
    """On uniform knots ``t_j = t_0 + j h`` the B-splines are shifted cardinal B-splines, and on
    knot interval i (``s = (x - t_i)/h``) only ``B_{i-k}..B_i`` are non-zero, each a fixed
    polynomial of s (``_piece_coefficients``). The forward evaluates those k + 1 values and
    slopes per input by Horner's rule and scatters the values into the dense layout; the
    backward gathers the incoming gradient at the same k + 1 positions. No recursion
    over the k levels, nothing of the dense width saved. With ``with_silu`` the output is the KAN
    layer's feature vector ``[silu(x_i), B_0(x_i), ..., B_{n-1}(x_i)]`` flattened to
    ``(..., in (n+1))`` (the SiLU fused in); otherwise the basis ``(..., in, n)``. Under
    ``create_graph`` the slopes are recomputed by differentiable ops (exact higher derivatives);
    ``jvp`` and a generated vmap rule serve torch.func. Outputs ``(features, index, slopes)``,
    the last two non-differentiable."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, knots: Tensor, inv_h: Tensor, k: int, n_basis: int, with_silu: bool) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        index, values, slopes = _local_pieces(x, knots, inv_h, k, n_basis)
        assert values is not None
        offset = int(with_silu)  # feature 0 of each input is silu(x_i)
        if offset:
            index = index + 1
        dense = values.new_zeros(*values.shape[:-1], n_basis + offset).scatter_add(-1, index, values)
        if offset:
            dense[..., 0] = F.silu(x)
            dense = dense.flatten(-2)
        return dense, index, slopes

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def, override]
        x, knots, inv_h, k, n_basis, with_silu = inputs
        _, index, slopes = output
        ctx.mark_non_differentiable(index, slopes)
        ctx.args = (k, n_basis, with_silu)
        ctx.save_for_backward(x, knots, inv_h, index, slopes)
        ctx.save_for_forward(x, knots, inv_h, index, slopes)

    @staticmethod
    def backward(ctx, grad: Tensor, *_rest: Tensor | None) -> tuple[Tensor | None, None, None, None, None, None]:  # type: ignore[override]
        x, knots, inv_h, index, slopes = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled():  # double backward: the slopes as functions of x
            return _uniform_grad(grad, x, knots, inv_h, *ctx.args), None, None, None, None, None
        return _gather_grad(grad, x, index, slopes, *ctx.args), None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_tangent: Tensor, *_tangents: None) -> tuple[Tensor, None, None]:  # type: ignore[no-untyped-def, override]
        x, _, _, index, slopes = ctx.saved_tensors
        return _scatter_tangent(x, x_tangent, index, slopes, *ctx.args), None, None


def _gather_grad(grad: Tensor, x: Tensor, index: Tensor, slopes: Tensor, k: int, n_basis: int,
                 with_silu: bool) -> Tensor:
    """``Σ_f grad_f d feature_f / dx`` from the k + 1 local positions (and the SiLU's)."""
    if not with_silu:
        return (grad.gather(-1, index) * slopes).sum(-1)
    grad = grad.unflatten(-1, (x.shape[-1], n_basis + 1))
    return (grad.gather(-1, index) * slopes).sum(-1) + grad[..., 0] * _silu_slope(x)


def _uniform_grad(grad: Tensor, x: Tensor, knots: Tensor, inv_h: Tensor, k: int, n_basis: int, with_silu: bool) -> Tensor:
    """The backward by differentiable ops (for a double backward)."""
    index, _, slopes = _local_pieces(x, knots, inv_h, k, n_basis, slopes_only=True)
    return _gather_grad(grad, x, index + int(with_silu), slopes, k, n_basis, with_silu)


def _scatter_tangent(x: Tensor, x_tangent: Tensor, index: Tensor, slopes: Tensor, k: int, n_basis: int,
                     with_silu: bool) -> Tensor:
    """The forward-mode derivative of the features along ``x_tangent``."""
    offset = int(with_silu)
    tangents = slopes * x_tangent.unsqueeze(-1)
    dense = tangents.new_zeros(*tangents.shape[:-1], n_basis + offset).scatter_add(-1, index, tangents)
    if not offset:
        return dense
    silu_tangent = (_silu_slope(x) * x_tangent).unsqueeze(-1)
    return torch.cat([silu_tangent, dense[..., 1:]], dim=-1).flatten(-2)


class _FusedUniformBSplineFeatures(torch.autograd.Function):
    """``_UniformBSplineFeatures`` by the C++ kernel (``layerlab.kernels.bspline``): one pass
    over the inputs forward and one backward, nothing saved but x. Used for CPU float32/float64
    outside torch.func transforms when the kernel is built; a double backward or a jvp runs the
    PyTorch form's differentiable ops (tested equal)."""

    @staticmethod
    def forward(ctx, x: Tensor, knots: Tensor, inv_h: Tensor, k: int, n_basis: int, with_silu: bool) -> Tensor:  # type: ignore[no-untyped-def, override]
        ctx.args = (k, n_basis, with_silu)
        ctx.save_for_backward(x, knots, inv_h)
        ctx.save_for_forward(x, knots, inv_h)
        rows = x.reshape(-1, x.shape[-1])
        out = bspline_kernel.bspline_features_forward(rows, knots, inv_h, _pieces(k, torch.float64, torch.device("cpu"))[0],
                                                      n_basis, F.silu(rows) if with_silu else None)
        return out.reshape(*x.shape[:-1], x.shape[-1] * (n_basis + 1)) if with_silu else out.reshape(*x.shape, n_basis)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:  # type: ignore[no-untyped-def, override]
        x, knots, inv_h = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        k, n_basis, with_silu = ctx.args
        if torch.is_grad_enabled():
            return _uniform_grad(grad, x, knots, inv_h, *ctx.args), None, None, None, None, None
        rows = grad.reshape(-1, x.shape[-1] * (n_basis + int(with_silu)))
        x_rows = x.reshape(-1, x.shape[-1])
        grad_x = bspline_kernel.bspline_features_backward(rows, x_rows, knots, inv_h,
                                                          _pieces(k, torch.float64, torch.device("cpu"))[0],
                                                          n_basis, _silu_slope(x_rows) if with_silu else None)
        return grad_x.reshape(x.shape), None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_tangent: Tensor, *_tangents: None) -> Tensor:  # type: ignore[no-untyped-def, override]
        x, knots, inv_h = ctx.saved_tensors
        k, n_basis, with_silu = ctx.args
        index, _, slopes = _local_pieces(x, knots, inv_h, k, n_basis, slopes_only=True)
        return _scatter_tangent(x, x_tangent, index + int(with_silu), slopes, *ctx.args)


def _uniform_features(x: Tensor, knots: Tensor, inv_h: Tensor, k: int, n_basis: int, with_silu: bool) -> Tensor:
    """The closed-form features on uniform knots: the C++ kernel where it serves
    (``bspline_kernel.usable(x)``), else the PyTorch form."""
    if bspline_kernel.usable(x):
        return _FusedUniformBSplineFeatures.apply(x, knots, inv_h, k, n_basis, with_silu)
    return _UniformBSplineFeatures.apply(x, knots, inv_h, k, n_basis, with_silu)[0]


def uniform_inv_spacing(grid: Tensor) -> Tensor | None:
    """``1/h`` per row if every row of ``grid`` is ``t_0 + j h`` up to rounding of the knots (each
    within ``16 eps max|t|`` of it), else None. A data-dependent check (one sync); None under
    torch.func transforms that batch the grid itself."""
    if grid.dim() != 2 or grid.shape[1] < 2 or not grid.dtype.is_floating_point:
        return None
    t0 = grid[:, :1]
    h = (grid[:, -1:] - t0) / (grid.shape[1] - 1)
    steps = torch.arange(grid.shape[1], dtype=grid.dtype, device=grid.device)
    tol = 16 * torch.finfo(grid.dtype).eps * grid.abs().amax(1).clamp_min(1e-30)
    uniform = (h[:, 0] > 0) & ((grid - (t0 + h * steps)).abs().amax(1) <= tol)
    try:
        ok = bool(uniform.all().item())
    except RuntimeError:  # a batched grid under vmap: no data-dependent branch possible
        return None
    return 1.0 / h[:, 0] if ok else None


def b_spline_basis_uniform(x: Tensor, grid: Tensor, inv_h: Tensor, spline_order: int) -> Tensor:
    """The B-splines ``B_{m,k}`` on uniform knots ``grid (in, n + k + 1)`` with ``1/h = inv_h (in,)``
    (``uniform_inv_spacing``): ``x (..., in)`` -> ``(..., in, n)``, from the local polynomial
    pieces (``_UniformBSplineFeatures``, or the C++ kernel where built), for ``2 <= k <= 5``
    (tested equal to the recursion, values and derivatives)."""
    k = int(spline_order)
    if k not in UNIFORM_ORDERS:
        raise ConfigError(f"b_spline_basis_uniform: spline_order must be in 2..5, got {spline_order} "
                          "(use b_spline_basis, which falls back to the Cox–de Boor recursion)")
    return _uniform_features(x, grid.contiguous(), inv_h.contiguous(), k, grid.shape[-1] - k - 1, False)


def b_spline_basis_reference(x: Tensor, grid: Tensor, spline_order: int) -> Tensor:
    r"""The plain form of ``b_spline_basis``: the Cox–de Boor recursion as written, level by
    level, differentiated by autograd through it (the fast form is tested equal to it)::

        B_{j,0}(x) = 1[t_j <= x < t_{j+1}]          (k = 0: the last interval closed at t_G)
        B_{j,p}(x) = (x - t_j)/(t_{j+p} - t_j) B_{j,p-1}(x) + (t_{j+p+1} - x)/(t_{j+p+1} - t_{j+1}) B_{j+1,p-1}(x)

    with a ratio over a zero knot gap taken as 0. Shapes as ``b_spline_basis``.
    """
    k = int(spline_order)
    x = x.unsqueeze(-1)  # (..., in, 1)
    t = grid  # (in, K)
    n_knots = t.shape[-1]

    def ratio(num: Tensor, gap: Tensor) -> Tensor:
        return num * torch.where(gap > 0, 1.0 / torch.where(gap > 0, gap, 1.0), 0.0)

    basis = ((t[:, :-1] <= x) & (x < t[:, 1:])).to(x.dtype)  # B_{j,0}, j = 0..K-2
    if k == 0:
        last = (t[:, -2:-1] <= x) & (x <= t[:, -1:])
        basis = torch.cat([basis[..., :-1], last.to(x.dtype)], dim=-1)
    for p in range(1, k + 1):
        n = n_knots - p - 1  # B_{j,p}, j = 0..n-1
        left = ratio(x - t[:, :n], t[:, p : p + n] - t[:, :n]) * basis[..., :n]
        right = ratio(t[:, p + 1 : p + 1 + n] - x, t[:, p + 1 : p + 1 + n] - t[:, 1 : 1 + n]) * basis[..., 1 : n + 1]
        basis = left + right
    return basis


def _check_mode(name: str, mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"{name}: mode must be one of {', '.join(MODES)}, got {mode!r}")


def b_spline_basis(x: Tensor, grid: Tensor, spline_order: int, mode: str = "fast") -> Tensor:
    r"""All B-splines of order ``k = spline_order`` on per-input knots, evaluated at once.

    Cox–de Boor recursion, vectorized over inputs, knots and leading dims (the only loop is over
    the ``k`` levels)::

        B_{j,0}(x) = 1[t_j <= x < t_{j+1}]
        B_{j,p}(x) = (x - t_j)/(t_{j+p} - t_j) B_{j,p-1}(x) + (t_{j+p+1} - x)/(t_{j+p+1} - t_{j+1}) B_{j+1,p-1}(x)

    (a ratio with a zero knot gap counts as 0; for ``k = 0`` the last interval is closed,
    ``B_{G-1,0}(t_G) = 1``). Shapes: ``x (..., in)``, ``grid (in, G + 2k + 1)`` (nondecreasing
    rows) -> ``(..., in, G + k)``. On the closed interval ``[t_k, t_{G+k}] = [lo, hi]`` the basis
    sums to one (partition of unity); outside ``[t_0, t_{G+2k})`` (``[t_0, t_G]`` for k = 0)
    every ``B_m`` is zero. Differentiable in ``x`` (any order), not in ``grid``.

    ``mode="fast"`` (default): on uniform knots and ``2 <= k <= 5`` the closed form of the
    cardinal B-spline (``b_spline_basis_uniform``); otherwise the recursion without an autograd
    tape, derivatives by the B-spline derivative formula (``_BSplineBasis``).
    ``mode="reference"``: ``b_spline_basis_reference``.
    """
    _check_mode("b_spline_basis", mode)
    if mode == "reference":
        return b_spline_basis_reference(x, grid, spline_order)
    k = int(spline_order)
    if k in UNIFORM_ORDERS and (inv_h := uniform_inv_spacing(grid)) is not None:
        return b_spline_basis_uniform(x, grid, inv_h, k)
    return _BSplineBasis.apply(x, grid, k)[0]


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


class KANLayer(WideBuffers):
    r"""One B-spline KAN layer ``Φ: R^in -> R^out`` (Liu et al. 2024, arXiv:2404.19756, Sec. 2.2).

    Equation (output j, sum over the edges i -> j)::

        y_j = Σ_i φ_ij(x_i),   φ_ij(x) = w_b[j,i] silu(x) + w_s[j,i] Σ_{m=0}^{G+k-1} c[j,i,m] B_m(x)

    with ``B_m`` the B-splines of order ``k`` on input i's knots (``grid[i]``), G intervals over
    ``grid_range`` extended by k knots each side. Computed as one basis expansion
    ``(..., in) -> (..., in, G+k)`` (``b_spline_basis``), the features ``[silu(x_i), B_m(x_i)]``
    flattened to ``(..., in (G+k+1))`` and one matrix product with ``[w_b, w_s ⊙ c]``. While the
    grid is uniform (checked once per grid version) and ``2 <= k <= 5``, the features come from
    the closed-form pieces (``_FusedUniformBSplineFeatures`` / ``_UniformBSplineFeatures``);
    after ``update_grid`` with ``grid_eps < 1`` the knots are not uniform and the recursion serves.

    Parameters: ``base_weight`` (w_b, ``(out, in)``), ``spline_scale`` (w_s, ``(out, in)``),
    ``spline_coef`` (c, ``(out, in, G+k)``), optional ``bias`` ``(out,)``; buffer ``grid``
    ``(in, G+2k+1)``, float32 or wider, also after ``module.to(torch.bfloat16)`` (rounded to
    bfloat16's 8 significant bits the knots would move by up to 0.2%). Count:
    ``out in (G + k + 2)`` (+ ``out`` with bias).

    Forms (``forward(x, mode=...)``): ``"fast"`` (default) as above; ``"reference"`` evaluates
    ``b_spline_basis_reference`` and sums ``φ_ij(x_i)`` over the edges as written (tested equal,
    outputs and gradients).

    Initialization (paper Sec. 2.2): ``w_s = 1``, ``c ~ N(0, 0.1^2)`` so that spline(x) ≈ 0,
    ``w_b`` Xavier (Glorot uniform, ``U(±sqrt(6 / (in + out)))``); bias zero.

    Outside ``[t_0, t_{G+2k}]`` every B-spline is zero, so ``φ(x) = w_b silu(x)``: finite and
    linear-like for large inputs. ``update_grid`` moves the knots to the data's quantiles and
    refits ``c`` by least squares (the paper's grid update and grid extension).
    """

    wide_buffers = ("grid",)

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
        grid_dtype = wide_dtype(_factory_dtype(dtype))
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

    def basis(self, x: Tensor, mode: str = "fast") -> Tensor:
        """B-spline features ``(..., in) -> (..., in, G + k)`` on this layer's knots, in float32 or wider."""
        cdt = wide_dtype(x.dtype)
        return b_spline_basis(x.to(cdt), self.grid.to(cdt), self.spline_order, mode)

    def fused_weight(self) -> Tensor:
        """``[w_b | w_s ⊙ c]`` as one matrix ``(out, in (G + k + 1))``, matching ``features``."""
        spline = self.spline_scale.unsqueeze(-1) * self.spline_coef
        return torch.cat([self.base_weight.unsqueeze(-1), spline], dim=-1).flatten(1)

    def _spacing(self, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
        """``(grid, 1/h)`` in ``dtype`` if the grid is uniform (``uniform_inv_spacing``), else None;
        cached while the grid tensor and its version are unchanged."""
        grid = self.grid
        cache = getattr(self, "_spacing_cache", None)
        key: tuple[int, torch.dtype] | None = None
        if not torch._C._are_functorch_transforms_active():  # tensors made under a transform must not outlive it
            key = (grid._version, dtype)
        if key is None or cache is None or cache[0] is not grid or cache[1] != key:
            knots = grid.to(dtype).contiguous()
            inv_h = uniform_inv_spacing(knots)
            cache = (grid, key, None if inv_h is None else (knots, inv_h))
            if key is not None:
                self._spacing_cache = cache
        return cache[2]

    def features(self, x: Tensor) -> Tensor:
        """``[silu(x_i), B_0(x_i), ..., B_{G+k-1}(x_i)]`` for each i, flattened: ``(..., in (G + k + 1))``.
        Uniform knots and ``2 <= k <= 5`` (the default grid): one closed-form Function for all of it."""
        cdt = wide_dtype(x.dtype)
        xc = x.to(cdt)
        k = self.spline_order
        if k in UNIFORM_ORDERS and (spacing := self._spacing(cdt)) is not None:
            return _uniform_features(xc, *spacing, k, self.grid_size + k, True)
        basis = b_spline_basis(xc, self.grid.to(cdt), self.spline_order)
        return torch.cat([F.silu(xc).unsqueeze(-1), basis], dim=-1).flatten(-2)

    def forward(self, x: Tensor, mode: str = "fast") -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        _check_mode("KANLayer", mode)
        if mode == "reference":
            return self._reference(x)
        weight = self.fused_weight()
        y = F.linear(self.features(x).to(weight.dtype), weight, self.bias)
        return y.to(x.dtype)

    def _reference(self, x: Tensor) -> Tensor:
        """``y_j = Σ_i [w_b silu(x_i) + w_s Σ_m c_m B_m(x_i)] + bias_j``, edge by edge, in float32 or wider."""
        cdt = wide_dtype(x.dtype)
        xc = x.to(cdt)
        basis = self.basis(xc, mode="reference")  # (..., in, G+k)
        spline = torch.einsum("...im,oim->...oi", basis, self.spline_coef.to(cdt))  # Σ_m c_m B_m(x_i)
        phi = self.base_weight.to(cdt) * F.silu(xc).unsqueeze(-2) + self.spline_scale.to(cdt) * spline
        y = phi.sum(-1)  # (..., out): Σ_i φ_ij(x_i)
        if self.bias is not None:
            y = y + self.bias.to(cdt)
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
class KAN(TwoLayerChannel):
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

    Cost (forward + backward, batch 256, against a GELU MLP of the same parameter count, in one
    run; ``benchmarks/channels.py``, 1-2 threads): with the C++ kernel 1.3-1.9x (D = 256 and 64); with the
    PyTorch closed form 2.1-4.5x; with the tape-free recursion (non-uniform grids) 2.9-5.9x. The
    matrix products alone cost 0.8-1.05x the MLP's; the rest is the basis expansion.
    ``forward(x, mode="reference")`` is the plain form: autograd through the Cox–de Boor
    recursion and the per-edge sum (tested equal to the fast form).

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

    def forward(self, x: Tensor, mode: str = "fast") -> Tensor:
        return super().forward(x, mode)

    @torch.no_grad()
    def update_grid(self, x: Tensor, grid_size: int | None = None, grid_eps: float = 0.02) -> None:
        """Update both layers' grids from samples ``x (..., D)``: the first on ``x``, the second
        on the first's (updated) outputs. See ``KANLayer.update_grid``."""
        check_last_dim(self, x)
        samples = x.reshape(-1, self.d_model)
        self.layer1.update_grid(samples, grid_size=grid_size, grid_eps=grid_eps)
        self.layer2.update_grid(self.layer1(samples), grid_size=grid_size, grid_eps=grid_eps)
