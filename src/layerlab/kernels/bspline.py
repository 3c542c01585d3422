r"""A fused kernel for local piecewise-polynomial bases on uniform knots (the B-splines of a KAN
layer, Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024, arXiv:2404.19756).

Input i has uniform knots ``t_{i,j} = t_{i,0} + j h_i`` (``knots (in, n + k + 1)``). On knot
interval ``q = floor((x - t_{i,0})/h_i)`` with local coordinate ``s = (x - t_{i,q})/h_i`` (from the
interval's own knot: fewer digits lost than from ``t_{i,0}``) only the k + 1 basis functions ``m = q - r``
(r = 0..k) can be non-zero, and ``B_m(x) = Σ_j coef[j, r] s^j`` (for B-splines, the pieces of
the cardinal B-spline; the caller passes ``coef``)::

    features[..., i, :] = [silu(x_i)?, B_0(x_i), ..., B_{n-1}(x_i)]            (forward)
    grad_x[..., i]      = g_0 silu'(x_i)? + Σ_m g_{m+1?} dB_m/dx (x_i)            (backward)

(``silu`` and ``silu'`` come in computed by PyTorch's vectorized kernels).

``bspline.cpp`` beside this file holds both loops (one pass over the inputs, nothing saved but
x). It is compiled with g++ (and ninja) on first use into ``$LAYERLAB_EXTENSIONS_DIR`` (default
``~/.cache/layerlab/extensions``), like the selective scan's kernel; where that fails, or with
``LAYERLAB_NO_EXTENSIONS=1``, ``extension()`` is None and the caller's PyTorch form runs (a
failed build says so once, in a warning). The PyTorch form is the reference it is tested against
(``layerlab.blocks.channels.kan``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ._extensions import NO_EXTENSIONS_ENV, LazyExtension, compile_inline  # noqa: F401  (the switch, re-exported)

__all__ = ["bspline_features_backward", "bspline_features_forward", "extension", "usable"]

SOURCE = Path(__file__).with_name("bspline.cpp")

def _build() -> object:
    return compile_inline("bspline", SOURCE, ["bspline_features_forward", "bspline_features_backward"],
                          ["-O3", "-fopenmp"])


# ``extension()``: the compiled kernel, built on first use; None where it is switched off or cannot be built.
extension = LazyExtension(lambda: _build(), what="the fused B-spline kernel", fallback="pure-PyTorch form")


def usable(x: Tensor) -> bool:
    """Whether the kernel can serve ``x``: built, a float32/float64 CPU tensor, no torch.func
    transform active (the kernel has no batching rule)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not torch._C._are_functorch_transforms_active() and extension() is not None)


def bspline_features_forward(x: Tensor, knots: Tensor, inv_h: Tensor, coef: Tensor, n_basis: int,
                             silu: Tensor | None = None) -> Tensor:
    """``x (rows, in)`` -> ``(rows, in (n_basis [+ 1]))``; ``knots (in, n_basis + k + 1)``, ``inv_h (in,)``, ``coef (k+1, k+1)``
    float64; ``silu (rows, in)``, when given, goes to column 0 of each input's block."""
    ext = extension()
    assert ext is not None, "bspline kernel: call usable(x) first"
    return ext.bspline_features_forward(x.contiguous(), knots.contiguous(), inv_h.contiguous(), coef, int(n_basis),
                                        None if silu is None else silu.contiguous())


def bspline_features_backward(grad: Tensor, x: Tensor, knots: Tensor, inv_h: Tensor, coef: Tensor, n_basis: int,
                              dsilu: Tensor | None = None) -> Tensor:
    """The gradient w.r.t. ``x (rows, in)`` of ``<grad, features(x)>``, ``grad (rows, in (n_basis [+ 1]))``;
    ``dsilu``, the SiLU's slope at x, when the features carry the SiLU column."""
    ext = extension()
    assert ext is not None, "bspline kernel: call usable(x) first"
    return ext.bspline_features_backward(grad.contiguous(), x.contiguous(), knots.contiguous(), inv_h.contiguous(),
                                         coef, int(n_basis), None if dsilu is None else dsilu.contiguous())
