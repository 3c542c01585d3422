r"""Lorentz (hyperboloid) linear layers, fully hyperbolic and tangent-space, as a channel mixer.

Paper: Chen, Han, Lin, Zhao, Liu, Li, Sun & Zhou, "Fully Hyperbolic Neural Networks", 2021 (ACL
2022), arXiv:2105.14686, Section 3.

The Lorentz model of curvature K < 0: 𝕃^n_K = {x ∈ R^{n+1} : ⟨x, x⟩_L = 1/K, x_0 > 0}, with the
Lorentzian inner product ⟨x, y⟩_L = -x_0 y_0 + Σ_{i≥1} x_i y_i (x_0 the time, x_s the space part).

The fully hyperbolic linear layer (the paper's Eq. 3: a Lorentz transformation, boost and rotation
together, with its norm controlled)::

    y = HL(x) = [ √(‖φ(Wx, v)‖² - 1/K) ;  φ(Wx, v) ],
    φ(Wx, v) = λ σ(vᵀx + b') / ‖W h(x) + b‖ · (W h(x) + b)

with W ∈ R^{m×(n+1)}, v ∈ R^{n+1}, σ the sigmoid, λ > 0 the (learned) bound of the space part's
norm and h an activation (here ReLU before the second layer, identity before the first). The
output lies on 𝕃^m_K by construction: ⟨y, y⟩_L = -(‖φ‖² - 1/K) + ‖φ‖² = 1/K.

The tangent-space ("hybrid") layer of the earlier hyperbolic networks, which the paper shows to be
a relaxation of a Lorentz rotation without the boost (Section 3.3): y = exp_o(W log_o(x) + b)
(``fully = False``), with exp_o, log_o the maps at the origin o = (√(-1/K), 0, ..., 0)::

    exp_o(v) = (√c cosh(‖v_s‖/√c), √c sinh(‖v_s‖/√c) v_s/‖v_s‖),  log_o(x) = (0, √c arcosh(x_0/√c) x_s/‖x_s‖),
    c = -1/K

As a channel mixer (``(..., D) -> (..., D)``, D = n + 1): the input's space part x_{1:} is lifted
onto the hyperboloid, x ↦ (√(‖x_{1:}‖² - 1/K), x_{1:}), then two layers map it to a point of
𝕃^{hidden-1}_K and back to a point of 𝕃^{D-1}_K, returned in its Minkowski coordinates (every
output row satisfies ⟨y, y⟩_L = 1/K; the backbone's residual stream around it is Euclidean).

Options: ``hidden`` (ambient width of the middle point, default D), ``curvature`` K (default -1),
``scale`` (λ's initial value, 10 as in the authors' code; learned through log λ), ``fully``
(True: the paper's layer; False: the tangent-space layer), ``bias``. Initialization: W, b and v
fan-in uniform U(±1/√fan_in) (PyTorch's Linear), b' = 0. Norms and square roots are computed in
float32 or wider; the output is in the input dtype.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_last_dim, init_linear, wide_dtype

PAPER = Paper("Fully Hyperbolic Neural Networks", 2021, "2105.14686")
EPS = 1e-12  # keeps a norm that is exactly zero (a point at the origin) from dividing by zero


def lorentz_inner(x: Tensor, y: Tensor) -> Tensor:
    """⟨x, y⟩_L = -x_0 y_0 + Σ_{i≥1} x_i y_i over the last dimension."""
    return (x[..., 1:] * y[..., 1:]).sum(-1) - x[..., 0] * y[..., 0]


def lift(space: Tensor, c: float) -> Tensor:
    """The point of the hyperboloid with space part `space`: (√(‖x_s‖² + c), x_s), c = -1/K."""
    return torch.cat([torch.sqrt(space.square().sum(-1, keepdim=True) + c), space], dim=-1)


def expmap0(v_space: Tensor, c: float) -> Tensor:
    """exp_o of the tangent vector (0, v_s) at the origin o = (√c, 0, ..., 0)."""
    sc = math.sqrt(c)
    norm = torch.sqrt(v_space.square().sum(-1, keepdim=True) + EPS ** 2)
    # the time part √c cosh(r) written as √(‖space‖² + c): equal, and exactly on the hyperboloid
    return lift(sc * torch.sinh(norm / sc) * v_space / norm, c)


def logmap0(x: Tensor, c: float) -> Tensor:
    """The space part of log_o(x) (its time part is 0): √c arcosh(x_0/√c) x_s/‖x_s‖."""
    sc = math.sqrt(c)
    space = x[..., 1:]
    norm = torch.sqrt(space.square().sum(-1, keepdim=True) + EPS ** 2)
    # arcosh(x_0/√c) = asinh(‖x_s‖/√c) on the hyperboloid: stable near the origin
    return sc * torch.asinh(norm / sc) * space / norm


class LorentzLinear(nn.Module):
    """One layer 𝕃^{in-1}_K -> 𝕃^{out-1}_K: the paper's HL (``fully``) or exp_o(W log_o(x) + b).

    Computes in the input's dtype (the channel passes float32 or wider), parameters cast to it.
    """

    def __init__(self, in_features: int, out_features: int, *, curvature: float = -1.0, scale: float = 10.0,
                 fully: bool = True, activation: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.c = -1.0 / curvature
        self.fully, self.activation = fully, activation
        kw = dict(device=device, dtype=dtype)
        fan_in = in_features if fully else in_features - 1  # the tangent layer reads the space part only
        self.weight = nn.Linear(fan_in, out_features - 1, bias=bias, **kw)  # W h(x) + b
        init_linear(self.weight)
        if fully:
            self.v = nn.Linear(in_features, 1, **kw)  # vᵀx + b'
            init_linear(self.v)
            nn.init.zeros_(self.v.bias)
            self.log_scale = nn.Parameter(torch.full((), math.log(scale), **kw))  # λ = exp(log λ)

    @staticmethod
    def _linear(layer: nn.Linear, x: Tensor) -> Tensor:
        bias = None if layer.bias is None else layer.bias.to(x.dtype)
        return F.linear(x, layer.weight.to(x.dtype), bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.fully:
            u = self._linear(self.weight, torch.relu(x) if self.activation else x)
            norm = torch.sqrt(u.square().sum(-1, keepdim=True) + EPS ** 2)
            lam = self.log_scale.to(x.dtype).exp()
            phi = lam * torch.sigmoid(self._linear(self.v, x)) * u / norm
            return lift(phi, self.c)
        t = logmap0(x, self.c)
        if self.activation:
            t = torch.relu(t)
        return expmap0(self._linear(self.weight, t), self.c)


@register("channel", "lorentz", paper=PAPER)
class LorentzChannel(nn.Module):
    """Two Lorentz linear layers between hyperboloid points, y = HL₂(HL₁(lift(x))) ∈ 𝕃^{D-1}_K.

    Paper: Chen et al., "Fully Hyperbolic Neural Networks", 2021, arXiv:2105.14686 (Eq. 3).
    Shape: (..., D) -> (..., D), every output row on the hyperboloid ⟨y, y⟩_L = 1/K. See the
    module docstring for the equations, the lift of the input and the options.
    """

    def __init__(self, d_model: int, *, hidden: int | None = None, curvature: float = -1.0, scale: float = 10.0,
                 fully: bool = True, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        hidden = d_model if hidden is None else int(hidden)
        if d_model < 2 or hidden < 2:
            raise ConfigError(f"lorentz: d_model and hidden must be >= 2 (a time and a space coordinate), got "
                              f"{d_model}, {hidden}")
        if not (math.isfinite(curvature) and curvature < 0):
            raise ConfigError(f"lorentz: curvature K must be finite and < 0 (hyperbolic space), got {curvature}")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"lorentz: scale (λ, the bound of the space part's norm) must be > 0, got {scale}")
        self.d_model, self.hidden, self.curvature, self.fully = d_model, hidden, float(curvature), bool(fully)
        kw = dict(curvature=curvature, scale=scale, fully=fully, bias=bias, device=device, dtype=dtype)
        self.layer1 = LorentzLinear(d_model, hidden, **kw)
        self.layer2 = LorentzLinear(hidden, d_model, activation=True, **kw)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        p = lift(x[..., 1:].to(wide_dtype(x.dtype)), -1.0 / self.curvature)
        return self.layer2(self.layer1(p)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, K={self.curvature}, fully={self.fully}"
