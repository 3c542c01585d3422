"""AF-KAN: Kolmogorov-Arnold layers built from activation-function bumps (ReLU-KAN generalized),
reduced to one value per input by attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_last_dim, wide_dtype
from ._two_layer import TwoLayerChannel

AFKAN_PAPER = Paper("AF-KAN: Activation Function-Based Kolmogorov-Arnold Networks for Efficient Representation Learning",
                    2025, "2503.06112")
ACTIVATIONS = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu, "elu": F.elu, "selu": F.selu,
               "softplus": F.softplus, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
FUNCS = ("quad1", "quad2", "sum", "prod", "sum_prod", "cubic1", "cubic2")


def combine(func: str, a: Tensor, b: Tensor) -> Tensor:
    """The paper's function combinations of ``a = sigma(x - l)`` and ``b = sigma(h - x)``."""
    if func == "quad1":
        return (a * b) ** 2  # ReLU-KAN's bump when sigma = ReLU
    if func == "quad2":
        return a * b + a * a + b * b
    if func == "sum":
        return a + b
    if func == "prod":
        return a * b
    if func == "sum_prod":
        return a + b + a * b
    if func == "cubic1":
        return (a + b) * (a * a + b * b)
    if func == "cubic2":
        return (a * b) ** 3
    raise ConfigError(f"af_kan: func must be one of {FUNCS}, got {func!r}")


class AFKANLayer(nn.Module):
    r"""One AF-KAN layer with global attention and layer normalization.

    Paper: Ta & Tran, "AF-KAN: Activation Function-Based Kolmogorov-Arnold Networks for Efficient
    Representation Learning", 2025, arXiv:2503.06112 (ReLU-KAN's bumps generalized to any
    activation sigma and function combination; attention and normalization to reduce parameters);
    the layout (global attention, then LayerNorm, sigma and a bias-free linear map) as in the
    authors' code (github.com/hoangthangta/All-KAN, ``AF_KANLayer``).

    Equation, for inputs ``x_i`` (i = 1..n) and ``G + k`` bumps with trainable phases
    ``l_m = (m - k) / G``, ``h_m = l_m + (k + 1) / G`` (m = 0..G+k-1)::

        b_{im}  = f(sigma(x_i - l_m), sigma(h_m - x_i))          f = func, default (a b)^2 ("quad1")
        b~      = (b - min b) / (max b - min b)                  (min-max over one position's n (G + k) values)
        a_i     = softmax_i( (w . b~_i + c) / max(T, 1) )        (global attention over the inputs; T init sqrt(n))
        z_i     = a_i sum_m b~_{im}
        y       = W sigma(LayerNorm(z))                          (W: out x n, no bias)

    Shape: ``(..., in) -> (..., out)``, each position on its own.

    Parameters: ``out n`` (W) + ``2 (G + k)`` (phases) + ``G + k + 1`` (w, c) + 1 (T) + ``2 n``
    (LayerNorm): about the dense layer's ``out n``, which is the paper's "parameter reduction".

    Initialization (the authors' code): W Kaiming-uniform (``a = sqrt(5)``, PyTorch's Linear
    default), w and c as ``nn.Linear(G + k, 1)``, phases as above, T = sqrt(n), LayerNorm (1, 0).

    Deviation: the authors' code min-max normalizes the bumps over the whole batch tensor, which
    makes each output depend on the other examples (and, in a sequence model, on future tokens);
    here the min and max are taken over one position's own ``n (G + k)`` values (1e-12 guards a
    constant input). Unused parts of the authors' layer (other attention variants) are left out.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        activation: str = "silu",
        func: str = "quad1",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for key, v in (("grid_size", grid_size), ("spline_order", spline_order)):
            if isinstance(v, bool) or int(v) != v or v < (1 if key == "grid_size" else 0):
                raise ConfigError(f"af_kan: {key} must be an integer >= {1 if key == 'grid_size' else 0}, got {v!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"af_kan: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if func not in FUNCS:
            raise ConfigError(f"af_kan: func must be one of {FUNCS}, got {func!r}")
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.grid_size, self.spline_order = int(grid_size), int(spline_order)
        self.activation, self.func = activation, func
        n_bumps = self.grid_size + self.spline_order
        self.phase_low = nn.Parameter(torch.empty(n_bumps, **factory))
        self.phase_high = nn.Parameter(torch.empty(n_bumps, **factory))
        self.attn = nn.Linear(n_bumps, 1, **factory)
        self.temperature = nn.Parameter(torch.empty((), **factory))
        self.norm = nn.LayerNorm(self.in_features, **factory)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        g, k = self.grid_size, self.spline_order
        with torch.no_grad():
            low = torch.arange(-k, g, dtype=torch.float64) / g
            self.phase_low.copy_(low)
            self.phase_high.copy_(low + (k + 1) / g)
            self.temperature.fill_(math.sqrt(self.in_features))
        self.attn.reset_parameters()
        self.norm.reset_parameters()
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def bumps(self, x: Tensor) -> Tensor:
        """Min-max normalized bumps ``b~`` of each input: ``(..., in) -> (..., in, G + k)``."""
        z = x.to(wide_dtype(x.dtype)).unsqueeze(-1)
        sigma = ACTIVATIONS[self.activation]
        b = combine(self.func, sigma(z - self.phase_low.to(z.dtype)), sigma(self.phase_high.to(z.dtype) - z))
        lo = b.flatten(-2).amin(-1)[..., None, None]
        hi = b.flatten(-2).amax(-1)[..., None, None]
        return (b - lo) / (hi - lo).clamp_min(1e-12)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        b = self.bumps(x)
        score = F.linear(b, self.attn.weight.to(b.dtype), self.attn.bias.to(b.dtype)).squeeze(-1)  # (..., in)
        a = torch.softmax(score / self.temperature.to(b.dtype).clamp_min(1.0), dim=-1)
        z = a * b.sum(-1)
        z = F.layer_norm(z, (self.in_features,), self.norm.weight.to(z.dtype), self.norm.bias.to(z.dtype),
                         self.norm.eps)
        h = ACTIVATIONS[self.activation](z)
        return F.linear(h.to(self.weight.dtype), self.weight).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}, "
                f"spline_order={self.spline_order}, activation={self.activation!r}, func={self.func!r}")


@register("channel", "af_kan", paper=AFKAN_PAPER)
class AFKAN(TwoLayerChannel):
    r"""Two AF-KAN layers in place of the MLP: ``d_model -> hidden -> d_model``.

    Paper: Ta & Tran, "AF-KAN: Activation Function-Based Kolmogorov-Arnold Networks for Efficient
    Representation Learning", 2025, arXiv:2503.06112.

    Equation: ``AF-KAN(x) = (Phi_1 ∘ Phi_0)(x)``, each ``Phi`` an ``AFKANLayer``::

        Phi(x) = W sigma(LayerNorm(z)),   z_i = softmax_i(w . b~(x_i) + c) sum_m b~_m(x_i)

    with ``b~`` the min-max normalized bumps ``f(sigma(x - l_m), sigma(h_m - x))`` (default SiLU,
    ``f = (a b)^2``, G = 5, k = 3).

    Shape: ``(..., D) -> (..., D)``, position-wise. Width: ``hidden = round(expansion * D)``
    (default 4, the MLP's; the parameter count is then the MLP's ``8 D^2`` plus ``O(D + G + k)``).

    Options: ``hidden``, ``expansion``, ``grid_size``, ``spline_order``, ``activation``, ``func``,
    ``dropout`` (on the output), ``device``, ``dtype``. See ``AFKANLayer`` for the initialization
    and the deviation (per-position normalization).
    """

    def __init__(
        self,
        d_model: int,
        *,
        hidden: int | None = None,
        expansion: float = 4.0,
        grid_size: int = 5,
        spline_order: int = 3,
        activation: str = "silu",
        func: str = "quad1",
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        from .._common import check_hidden_options

        check_hidden_options("af_kan", hidden, expansion, dropout)
        self.d_model = int(d_model)
        self.hidden = int(hidden) if hidden is not None else max(1, round(expansion * d_model))
        opts = {"grid_size": grid_size, "spline_order": spline_order, "activation": activation, "func": func,
                "device": device, "dtype": dtype}
        self.layer1 = AFKANLayer(self.d_model, self.hidden, **opts)
        self.layer2 = AFKANLayer(self.hidden, self.d_model, **opts)
        self.dropout = nn.Dropout(dropout)
