"""S-KAN: Kolmogorov-Arnold layers whose nodes select among several activation function spaces."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import WideBuffers, check_last_dim, wide_dtype
from .kan import MODES, _check_grid_options, b_spline_basis, uniform_grid
from ._two_layer import TwoLayerChannel

SKAN_PAPER = Paper("Activation Space Selectable Kolmogorov-Arnold Networks", 2024, "2408.08338")
SPACES = ("bspline", "chebyshev", "fourier", "rbf", "silu")


def _check_spaces(name: str, spaces: Sequence[str]) -> tuple[str, ...]:
    if isinstance(spaces, str) or not isinstance(spaces, Sequence) or not spaces:
        raise ConfigError(f"{name}: spaces must be a non-empty list of activation spaces from {SPACES}, got {spaces!r}")
    spaces = tuple(spaces)
    bad = [s for s in spaces if s not in SPACES]
    if bad or len(set(spaces)) != len(spaces):
        raise ConfigError(f"{name}: spaces must be distinct names from {SPACES}; got {spaces!r}")
    return spaces


def _check_count(name: str, key: str, value: int, least: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < least:
        raise ConfigError(f"{name}: {key} must be an integer >= {least}, got {value!r}")
    return int(value)


class SKANLayer(WideBuffers):
    r"""One S-KAN layer: every edge function is a mixture of functions from several spaces.

    Paper: Yang, Zhang, Luo, Lu & Shen, "Activation Space Selectable Kolmogorov-Arnold Networks",
    2024, arXiv:2408.08338.

    Equation, for output node ``j`` and spaces ``s`` with bases ``{B^s_m}``::

        y_j = sum_s alpha_{js} sum_i phi^s_{ji}(x_i) + b_j,     phi^s_{ji}(x) = sum_m c^s_{jim} B^s_m(x)

    The spaces (``spaces``): ``"bspline"`` (order-k B-splines on G intervals over
    ``grid_range``, G + k functions), ``"chebyshev"`` (``T_n(tanh x)``, n = 0..degree),
    ``"fourier"`` (``sin(n x), cos(n x)``, n = 1..frequencies), ``"rbf"`` (Gaussians
    ``exp(-((x - mu_m)/h)^2)`` at ``rbf_centers`` equally spaced centres over ``grid_range``,
    h their spacing) and ``"silu"`` (one function, SiLU). ``alpha`` (out, S) are the learnable
    selection weights of each node.

    Selection (the paper's three phases: full training, selective training, pruning): while
    every space is active the layer is the full mixture; ``select(k)`` keeps, at each output
    node, the ``k`` spaces with the largest ``|alpha_{js}|`` and masks the rest (``active``, a
    boolean buffer), so that later training and inference use only the selected activation
    mode(s); ``active_parameters()`` counts what remains.

    Forms: ``forward(x, mode="reference")`` sums space by space as written above;
    ``mode="fast"`` (default) concatenates every space's features and applies one matrix
    ``[alpha_{js} c^s_{j..}]_s``; tested equal.

    Initialization (ours; the paper's is not stated in what we could read): ``alpha = 1/S``,
    coefficients ``U(-1/sqrt(F), 1/sqrt(F))`` with ``F = in * sum_s M_s`` (the fan-in of the fused
    feature vector, as ``nn.Linear``), bias 0.
    """

    wide_buffers = ("grid",)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        spaces: Sequence[str] = SPACES,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        degree: int = 4,
        frequencies: int = 3,
        rbf_centers: int = 8,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        name = "SKANLayer"
        self.spaces = _check_spaces(name, spaces)
        _check_grid_options(name, grid_size, spline_order, grid_range)
        self.degree = _check_count(name, "degree", degree, 0)
        self.frequencies = _check_count(name, "frequencies", frequencies, 1)
        self.rbf_centers = _check_count(name, "rbf_centers", rbf_centers, 2)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.grid_size, self.spline_order = int(grid_size), int(spline_order)
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        sizes = {"bspline": self.grid_size + self.spline_order, "chebyshev": self.degree + 1,
                 "fourier": 2 * self.frequencies, "rbf": self.rbf_centers, "silu": 1}
        self.sizes = tuple(sizes[s] for s in self.spaces)
        factory = {"device": device, "dtype": dtype}
        self.coef = nn.ParameterList(
            [nn.Parameter(torch.empty(out_features, in_features, m, **factory)) for m in self.sizes])
        self.alpha = nn.Parameter(torch.empty(out_features, len(self.spaces), **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.register_buffer("active", torch.ones(out_features, len(self.spaces), dtype=torch.bool, device=device))
        grid_dtype = wide_dtype(dtype if dtype is not None else torch.get_default_dtype())
        self.register_buffer("grid", uniform_grid(in_features, self.grid_size, self.spline_order, self.grid_range,
                                                  device=device, dtype=grid_dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = (self.in_features * sum(self.sizes)) ** -0.5
        with torch.no_grad():
            for c in self.coef:
                nn.init.uniform_(c, -bound, bound)
            self.alpha.fill_(1.0 / len(self.spaces))
            self.active.fill_(True)
            if self.bias is not None:
                self.bias.zero_()

    def space_features(self, x: Tensor) -> list[Tensor]:
        """Each space's basis at every input: a list of ``(..., in, M_s)``, in float32 or wider."""
        z = x.to(wide_dtype(x.dtype))
        out = []
        for space in self.spaces:
            if space == "bspline":
                out.append(b_spline_basis(z, self.grid.to(z.dtype), self.spline_order))
            elif space == "chebyshev":  # T_0 = 1, T_1 = t, T_{n+1} = 2 t T_n - T_{n-1}
                t = torch.tanh(z)
                polys = [torch.ones_like(t), t]
                for _ in range(2, self.degree + 1):
                    polys.append(2 * t * polys[-1] - polys[-2])
                out.append(torch.stack(polys[: self.degree + 1], dim=-1))
            elif space == "fourier":
                n = torch.arange(1, self.frequencies + 1, device=z.device, dtype=z.dtype)
                nz = z.unsqueeze(-1) * n
                out.append(torch.cat([torch.sin(nz), torch.cos(nz)], dim=-1))
            elif space == "rbf":
                lo, hi = self.grid_range
                mu = torch.linspace(lo, hi, self.rbf_centers, device=z.device, dtype=z.dtype)
                h = (hi - lo) / (self.rbf_centers - 1)
                out.append(torch.exp(-(((z.unsqueeze(-1) - mu) / h) ** 2)))
            else:  # silu
                out.append(F.silu(z).unsqueeze(-1))
        return out

    def gate(self) -> Tensor:
        """The selection weights with the deselected spaces zeroed: ``alpha * active``, (out, S)."""
        return self.alpha * self.active.to(self.alpha.dtype)

    def fused_weight(self) -> Tensor:
        """``[alpha_{js} c^s_j]`` over spaces, as one matrix ``(out, in * sum_s M_s)`` matching
        the concatenated features."""
        g = self.gate()
        parts = [g[:, s, None, None] * c for s, c in enumerate(self.coef)]
        return torch.cat(parts, dim=-1).flatten(1)

    def forward(self, x: Tensor, mode: str = "fast") -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        if mode not in MODES:
            raise ConfigError(f"SKANLayer: mode must be one of {MODES}, got {mode!r}")
        feats = self.space_features(x)
        if mode == "reference":
            g = self.gate().to(feats[0].dtype)
            y = 0
            for s, (phi, c) in enumerate(zip(feats, self.coef)):
                per_edge = torch.einsum("...im,jim->...ji", phi, c.to(phi.dtype))  # phi^s_ji(x_i)
                y = y + g[:, s] * per_edge.sum(-1)
            if self.bias is not None:
                y = y + self.bias.to(g.dtype)
            return y.to(x.dtype)
        weight = self.fused_weight()
        return F.linear(torch.cat(feats, dim=-1).flatten(-2).to(weight.dtype), weight, self.bias).to(x.dtype)

    @torch.no_grad()
    def select(self, k: int = 1) -> None:
        """Keep at every output node the ``k`` spaces with the largest ``|alpha|`` (among all
        spaces, selected or not), mask the others."""
        k = _check_count("SKANLayer.select", "k", k, 1)
        if k > len(self.spaces):
            raise ConfigError(f"SKANLayer.select: k = {k} exceeds the {len(self.spaces)} spaces {self.spaces}")
        top = self.alpha.abs().topk(k, dim=1).indices
        self.active.zero_().scatter_(1, top, True)

    def active_parameters(self) -> int:
        """Parameters still in use: the selected spaces' coefficients and weights, plus the bias."""
        per_space = torch.tensor(self.sizes) * self.in_features + 1  # coefficients + alpha of one node
        used = int((self.active.cpu().long() * per_space).sum())
        return used + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, spaces={self.spaces}, "
                f"sizes={self.sizes}")


def skan_hidden(d_model: int, features: int) -> int:
    """Default hidden width: the largest h with ``2 d h (features + 1) <= 8 d^2`` (the expansion-4
    MLP's weights), ``features = sum_s M_s``; at least 1."""
    return max(1, (4 * d_model) // (features + 1))


@register("channel", "skan", paper=SKAN_PAPER)
class SKAN(TwoLayerChannel):
    r"""Two S-KAN layers in place of the MLP: ``d_model -> hidden -> d_model``.

    Paper: Yang, Zhang, Luo, Lu & Shen, "Activation Space Selectable Kolmogorov-Arnold Networks",
    2024, arXiv:2408.08338.

    Equation (``SKAN(x) = (Phi_1 ∘ Phi_0)(x)``, each ``Phi`` an ``SKANLayer``)::

        Phi(x)_j = sum_s alpha_{js} sum_i phi^s_{ji}(x_i) + b_j

    over the activation spaces ``spaces`` (default: B-spline, Chebyshev, Fourier, RBF, SiLU).

    Shape: ``(..., D) -> (..., D)``, position-wise.

    Width: ``hidden = floor(4 D / (sum_s M_s + 1))`` unless given, so that the two layers' weights
    stay within the ``8 D^2`` of the expansion-4 MLP (``skan_hidden``).

    Training phases: the arena trains the full mixture (the paper's first phase); ``select(k)``
    applies the selection to both layers for the selective-training and pruning phases.

    Options: ``hidden``, ``spaces``, ``grid_size``, ``spline_order``, ``grid_range``, ``degree``,
    ``frequencies``, ``rbf_centers``, ``bias``, ``dropout`` (on the output), ``device``, ``dtype``.
    ``forward(x, mode=...)`` passes ``"fast"``/``"reference"`` to both layers.

    Deviations: only the abstract and summaries of the paper were available; the candidate
    spaces, their sizes, the initialization and the magnitude rule of ``select`` are ours.
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        spaces: Sequence[str] = SPACES,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        degree: int = 4,
        frequencies: int = 3,
        rbf_centers: int = 8,
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if hidden is not None and (isinstance(hidden, bool) or int(hidden) < 1):
            raise ConfigError(f"skan: hidden must be >= 1 (or None for the MLP-matched default), got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"skan: dropout must be in [0, 1), got {dropout}")
        opts = {"spaces": spaces, "grid_size": grid_size, "spline_order": spline_order, "grid_range": tuple(grid_range),
                "degree": degree, "frequencies": frequencies, "rbf_centers": rbf_centers, "bias": bias,
                "device": device, "dtype": dtype}
        self.d_model = int(d_model)
        probe = SKANLayer(1, 1, **{**opts, "device": "meta"})  # validates the options, gives the sizes
        self.hidden = int(hidden) if hidden is not None else skan_hidden(self.d_model, sum(probe.sizes))
        self.layer1 = SKANLayer(self.d_model, self.hidden, **opts)
        self.layer2 = SKANLayer(self.hidden, self.d_model, **opts)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mode: str = "fast") -> Tensor:
        return super().forward(x, mode)

    def select(self, k: int = 1) -> None:
        """``SKANLayer.select(k)`` on both layers."""
        self.layer1.select(k)
        self.layer2.select(k)
