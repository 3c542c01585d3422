r"""MgNO: a neural operator whose linear operators are multigrid V-cycles (1-D, on a vertex grid).

Paper: He, Liu & Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid", 2023
(ICLR 2024), arXiv:2310.19809, Sections 3-4.

A layer of neurons that are functions (the paper's Eq. 1)::

    O_i(u) = σ( Σ_j W_ij u_j + B_ij ),        B_ij a function (one learned value per grid point)

with the multi-channel linear operator W = W_Mg a V-cycle of MgNet type (He & Xu 2019) built from
convolutions; with u the input (c_in channels) as the right-hand side f¹ and u^{1,0} = 0::

    for ℓ = 1..J:   u^{ℓ,i} = u^{ℓ,i-1} + S^{ℓ,i} * (f^ℓ - A^ℓ * u^{ℓ,i-1}),   i = 1..ν      (smoothing)
                    f^{ℓ+1} = R^{ℓ+1}_ℓ *₂ (f^ℓ - A^ℓ * u^ℓ),   u^{ℓ+1,0} = 0                 (restriction)
    for ℓ = J-1..1: u^ℓ ← u^ℓ + Π^ℓ_{ℓ+1} *₂ u^{ℓ+1}                                       (prolongation)
    W_Mg(u) = u¹

A^ℓ: c_out -> c_in, S^{ℓ,i}: c_in -> c_out (kernel 3, zero padding: the Dirichlet boundary);
R: stride-2 convolution (kernel 3, no padding: n -> (n - 1)/2, full-weighting-shaped), Π: its
transpose (n_coarse -> 2 n_coarse + 1, linear-interpolation-shaped). With A^ℓ the Laplacian
stencil, S damped Jacobi, R = [1/4, 1/2, 1/4] and Π = [1/2, 1, 1/2] this is a classical multigrid
V-cycle (with pre-smoothing only), which the tests check. No lifting or projection: the first layer
maps 1 channel to ``d_model``, the last W_Mg (no activation) maps ``d_model`` channels back to 1.

How a ModelSpec reads on the operator backbone (``mixer = "mgno"``): ``d_model`` = channels,
``n_layers`` = nonlinear layers, ``mixer_options``: ``levels`` J (4), ``smoothing`` ν (2),
``activation`` ("gelu", "relu" or "tanh"). The grid (the task's sensors = queries) must have
n = 2^(J-1) (n_J + 1) - 1 points (e.g. 63 for J <= 6). Initialization: PyTorch's convolution default
(the paper gives none), function biases zero. Deviations: 1-D only; the same kernels at every
resolution of the grid are not re-scaled (the paper's resolution-invariance remarks are not used).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name

MGNO_OPTIONS: dict[str, Any] = {"levels": 4, "smoothing": 2, "activation": "gelu"}
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def mgno_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(MGNO_OPTIONS))
    if unknown:
        raise ConfigError(f"backbone 'operator', mixer 'mgno': unknown mixer_options {unknown}; valid: "
                          f"{sorted(MGNO_OPTIONS)}")
    opts = {**MGNO_OPTIONS, **options}
    for key in ("levels", "smoothing"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"mgno: mixer_options.{key} must be an integer >= 1, got {v!r}")
    if opts["activation"] not in ACTIVATIONS:
        raise unknown_name("mgno activation", str(opts["activation"]), ACTIVATIONS)
    return opts


def level_sizes(n: int, levels: int) -> list[int]:
    """Grid sizes n_1 = n, n_{ℓ+1} = (n_ℓ - 1)/2; a ConfigError if a level is not a whole grid."""
    sizes = [n]
    for _ in range(levels - 1):
        m = sizes[-1]
        if m < 3 or (m - 1) % 2:
            raise ConfigError(f"mgno: a grid of {n} points cannot be coarsened {levels - 1} times (n -> (n - 1)/2 "
                              f"must stay odd and >= 1); use n = 2^k - 1 points (e.g. 63) or fewer levels")
        sizes.append((m - 1) // 2)
    return sizes


class MgOperator(nn.Module):
    """W_Mg: c_in -> c_out channels on a grid of n points, one V-cycle (see the module docstring)."""

    def __init__(self, c_in: int, c_out: int, n: int, *, levels: int = 4, smoothing: int = 2) -> None:
        super().__init__()
        self.sizes = level_sizes(n, levels)
        self.levels, self.smoothing = levels, smoothing
        self.A = nn.ModuleList(nn.Conv1d(c_out, c_in, 3, padding=1, bias=False) for _ in range(levels))
        self.S = nn.ModuleList(nn.ModuleList(nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)
                                             for _ in range(smoothing)) for _ in range(levels))
        self.R = nn.ModuleList(nn.Conv1d(c_in, c_in, 3, stride=2, bias=False) for _ in range(levels - 1))
        self.P = nn.ModuleList(nn.ConvTranspose1d(c_out, c_out, 3, stride=2, bias=False) for _ in range(levels - 1))
        self.c_out = c_out

    def forward(self, f: Tensor) -> Tensor:
        us: list[Tensor] = []
        for level in range(self.levels):
            u = f.new_zeros(f.shape[0], self.c_out, f.shape[-1])
            for S in self.S[level]:
                u = u + S(f - self.A[level](u))
            us.append(u)
            if level < self.levels - 1:
                f = self.R[level](f - self.A[level](u))
        u = us[-1]
        for level in range(self.levels - 2, -1, -1):
            u = us[level] + self.P[level](u)
        return u


class MgNO(nn.Module):
    """MgNO on a 1-D grid: (B, n) input function -> (B, n) output function on the same grid."""

    def __init__(self, n: int, *, width: int, depth: int, levels: int = 4, smoothing: int = 2,
                 activation: str = "gelu") -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ConfigError(f"mgno: width (d_model) and depth (n_layers) must be >= 1, got {width}, {depth}")
        self.n = int(n)
        channels = [1] + [width] * depth + [1]
        self.operators = nn.ModuleList(MgOperator(a, b, n, levels=levels, smoothing=smoothing)
                                       for a, b in zip(channels[:-1], channels[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b, n)) for b in channels[1:])
        self.act = ACTIVATIONS[activation]()

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() != 2 or u.shape[1] != self.n:
            raise ShapeError(f"MgNO expects input functions of shape (B, n) with n = {self.n} grid points; "
                             f"got {tuple(u.shape)}")
        h = u[:, None, :]
        last = len(self.operators) - 1
        for i, (W, B) in enumerate(zip(self.operators, self.biases)):
            h = W(h) + B
            if i < last:
                h = self.act(h)
        return h[:, 0, :]


def build_mgno(spec: Any, *, sensors: int, queries: Tensor) -> MgNO:
    """The MgNO ``spec`` describes, on the task's grid (its queries must be its sensors)."""
    opts = mgno_options(spec.mixer_options)
    if len(queries) != sensors:
        raise ConfigError(f"mgno maps a function on a grid to a function on the same grid; the task asks for "
                          f"{len(queries)} outputs from {sensors} sensors")
    return MgNO(sensors, width=spec.d_model, depth=spec.n_layers, levels=opts["levels"],
                smoothing=opts["smoothing"], activation=opts["activation"])


__all__ = ["MgNO", "MgOperator", "build_mgno", "level_sizes", "mgno_options"]
