"""Trainable matrix activations: sigma(y) = D(y) y with a piecewise-constant, trainable matrix D."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from ._common import WideBuffers, check_last_dim, wide_dtype

MATRIX_ACTIVATION_PAPER = Paper("Neural networks with trainable matrix activation functions", 2021, "2109.09948")
STRUCTURES = ("diagonal", "tridiagonal")
MODES = ("fast", "reference")


def piecewise_levels(y: Tensor, knots: Tensor, levels: Tensor) -> Tensor:
    """``alpha_i(y_i) = levels[i, j]`` for ``knots[j-1] <= y_i < knots[j]`` (``j = 0`` below the first
    knot, ``j = m`` at or above the last): ``y (..., n)``, ``knots (m,)``, ``levels (n, m + 1)``."""
    bucket = torch.searchsorted(knots, y.detach().contiguous(), right=True)  # (..., n) in 0..m
    n = levels.shape[0]
    flat = bucket.reshape(-1, n)
    picked = levels.gather(1, flat.T).T  # (rows, n): levels[i, bucket[r, i]]
    return picked.reshape(bucket.shape)


@register("activation", "matrix", paper=MATRIX_ACTIVATION_PAPER)
class MatrixActivation(WideBuffers):
    r"""Trainable matrix activation function (TMAF).

    Paper: Liu, Cao, Li & Zikatanov, "Neural networks with trainable matrix activation functions",
    2021 (revised 2024), arXiv:2109.09948.

    Equation, on the ``n = d_model`` pre-activations ``y`` of one position::

        sigma(y) = D(y) y,
        diagonal:     D(y) = diag(alpha_1(y_1), ..., alpha_n(y_n))
        tridiagonal:  D(y)_{i,i} = alpha_i(y_i),  D(y)_{i,i+1} = beta_i(y_{i+1}),  D(y)_{i,i-1} = gamma_i(y_{i-1})

    where each entry is piecewise constant in one input, with the knots ``s_1 < ... < s_m``
    (``knots``, shared, fixed) and trainable levels ``t_{i,0..m}``::

        alpha_i(x) = t_{i,j}   for s_j <= x < s_{j+1}   (s_0 = -inf, s_{m+1} = +inf)

    so that only comparisons and scalar multiplications are needed. ReLU is the diagonal case
    with one knot at 0 and levels (0, 1); a leaky ReLU has levels (a, 1).

    Shape: ``(..., n) -> (..., n)``; ``d_model = n`` is required (one set of levels per unit).
    Levels of ``(n, m + 1)`` (and ``2 (n, m + 1)`` off-diagonal levels when tridiagonal).
    Computed in float32 or wider, returned in the input dtype.

    Initialization: ReLU, as in the paper: diagonal levels 0 on the intervals below 0 and 1
    above; off-diagonal levels 0. Default knots: ``-3, -2, ..., 3`` (8 intervals; 0 must be a
    knot so that the ReLU initialization is exact).

    Forms: ``forward(y, mode="reference")`` builds ``D(y)`` as a dense ``(..., n, n)`` matrix and
    multiplies; ``"fast"`` (default) gathers the levels and shifts the neighbours; tested equal.

    Gradients: ``d sigma / d y = D(y)`` almost everywhere (the levels are locally constant in y);
    the knots get no gradient (their derivative is a Dirac mass), so they stay fixed; the levels
    are trained with the weights.

    Deviation: the paper's tridiagonal construction is implemented as written above (each
    off-diagonal entry a piecewise-constant function of the input it multiplies); its exact
    off-diagonal parameterization was not verified against the paper's body.
    """

    wide_buffers = ("knots",)

    def __init__(
        self,
        d_model: int,
        *,
        knots: Sequence[float] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
        structure: str = "diagonal",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ConfigError(f"matrix activation: d_model (the number of units n) must be an integer >= 1, "
                              f"got {d_model!r}")
        if structure not in STRUCTURES:
            raise ConfigError(f"matrix activation: structure must be one of {STRUCTURES}, got {structure!r}")
        try:
            ks = [float(k) for k in knots]
        except (TypeError, ValueError):
            raise ConfigError(f"matrix activation: knots must be a list of numbers, got {knots!r}") from None
        if not ks or any(not math.isfinite(k) for k in ks) or any(b <= a for a, b in zip(ks, ks[1:])):
            raise ConfigError(f"matrix activation: knots must be finite and strictly increasing, got {knots!r}")
        if 0.0 not in ks:
            raise ConfigError(f"matrix activation: 0 must be one of the knots (the ReLU initialization needs it); "
                              f"got {knots!r}, add 0.0")
        self.d_model, self.structure = int(d_model), structure
        grid_dtype = wide_dtype(dtype if dtype is not None else torch.get_default_dtype())
        self.register_buffer("knots", torch.tensor(ks, dtype=grid_dtype, device=device))
        factory = {"device": device, "dtype": dtype}
        self.levels = nn.Parameter(torch.empty(self.d_model, len(ks) + 1, **factory))
        self.off_levels = (nn.Parameter(torch.empty(2, self.d_model, len(ks) + 1, **factory))
                           if structure == "tridiagonal" else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ReLU: level 1 on the intervals at or above the knot 0, 0 below; off-diagonals 0."""
        above = torch.cat([torch.zeros(1, device=self.knots.device), (self.knots >= 0).float()])
        with torch.no_grad():
            self.levels.copy_(above.expand_as(self.levels))
            if self.off_levels is not None:
                self.off_levels.zero_()

    def matrix(self, y: Tensor) -> Tensor:
        """``D(y)`` as a dense ``(..., n, n)`` matrix, in float32 or wider."""
        z = y.to(wide_dtype(y.dtype))
        knots = self.knots.to(z.dtype)
        diag = piecewise_levels(z, knots, self.levels.to(z.dtype))
        D = torch.diag_embed(diag)
        if self.off_levels is not None:
            n = self.d_model
            # D_{i,i+1} = beta_i(y_{i+1}): row i's levels at column i+1's input; D_{i,i-1} = gamma_i(y_{i-1})
            beta = piecewise_levels(z[..., 1:], knots, self.off_levels[0][: n - 1].to(z.dtype))
            gamma = piecewise_levels(z[..., :-1], knots, self.off_levels[1][1:].to(z.dtype))
            D = D + torch.diag_embed(beta, offset=1) + torch.diag_embed(gamma, offset=-1)
        return D

    def forward(self, y: Tensor, mode: str = "fast") -> Tensor:
        check_last_dim(self, y)
        if mode not in MODES:
            raise ConfigError(f"matrix activation: mode must be one of {MODES}, got {mode!r}")
        z = y.to(wide_dtype(y.dtype))
        if mode == "reference":
            return (self.matrix(z) @ z.unsqueeze(-1)).squeeze(-1).to(y.dtype)
        knots = self.knots.to(z.dtype)
        out = piecewise_levels(z, knots, self.levels.to(z.dtype)) * z
        if self.off_levels is not None and self.d_model > 1:
            n = self.d_model
            right = piecewise_levels(z[..., 1:], knots, self.off_levels[0][: n - 1].to(z.dtype)) * z[..., 1:]
            left = piecewise_levels(z[..., :-1], knots, self.off_levels[1][1:].to(z.dtype)) * z[..., :-1]
            pad = z.new_zeros(*z.shape[:-1], 1)
            out = out + torch.cat([right, pad], -1) + torch.cat([pad, left], -1)
        return out.to(y.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, structure={self.structure!r}, knots={self.knots.tolist()}"
