r"""A small hypernetwork backbone with Magnitude Invariant Parametrizations (MIP).

Paper: Gonzalez Ortiz, Guttag & Dalca, "Magnitude Invariant Parametrizations Improve Hypernetwork
Learning", 2023 (ICLR 2024), arXiv:2304.07645.

A hypernetwork ``h(γ; φ)`` maps a conditioning input ``γ ∈ [0, 1]^k`` to the weights ``θ`` of a
primary network ``f(x; θ)``. The paper's diagnosis: with the usual ReLU MLP hypernetwork (biases
zero at initialisation) the map is positively homogeneous, ``h(αγ) = α h(γ)``, so the magnitude of
the predicted weights is proportional to the magnitude of the input -- small ``γ`` gives near-zero
weights and the gradients scale with ``||γ||``: unstable, slow optimisation. MIP has two parts:

1. an input encoding to a constant-norm space, ``E_L2(γ)``, each coordinate mapped to
   ``[cos(π γ_i / 2), sin(π γ_i / 2)]`` so that ``||E_L2(γ)||² = k`` for every ``γ``;
2. a residual output: ``θ = θ_0 + Δθ``, ``Δθ = h(E_L2(γ); φ)``, with ``θ_0`` independent learnable
   parameters (initialised as the primary network's own initialisation).

``Hypernetwork(..., mip=False)`` is the standard formulation ``θ = h(γ; φ)`` for comparison.

Shapes: primary network ``d_in -> width -> d_out`` (ReLU), ``forward(x (N, d_in), γ (k,)) -> (N, d_out)``;
one ``γ`` per call (the weights are shared across the batch).

Initialization: hypernetwork layers ``nn.Linear`` default weights with zero biases (the setting
the paper analyses); every predicted parameter is multiplied by its primary layer's
``1/sqrt(fan_in)``; MIP's ``θ_0`` is drawn U(±sqrt(3/fan_in)) and its ``Δθ`` gets a further factor
``delta_scale`` (default 0.1).
Deviations: the cos/sin form of ``E_L2`` is our reading of the paper's constant-norm encoding (its
figure: inputs "projected to a constant norm vector space"); no normalisation layers in the
hypernetwork; one conditioning vector per batch.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


def encode_l2(gamma: Tensor) -> Tensor:
    """E_L2: ``(..., k) -> (..., 2k)``, ``[cos(π γ_i / 2), sin(π γ_i / 2)]`` per coordinate (norm² = k)."""
    ang = gamma * (math.pi / 2)
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1).flatten(-2)


class Hypernetwork(nn.Module):
    """Hypernetwork ``k -> hidden -> hidden -> n_params`` predicting a ReLU MLP ``d_in -> width -> d_out``."""

    def __init__(self, k: int, d_in: int, width: int, d_out: int, *, hidden: int = 64, mip: bool = True,
                 delta_scale: float = 0.1, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if min(k, d_in, width, d_out, hidden) < 1:
            raise ConfigError(f"Hypernetwork: k, d_in, width, d_out, hidden must be >= 1, got {k}, {d_in}, {width}, "
                              f"{d_out}, {hidden}")
        if not delta_scale > 0:
            raise ConfigError(f"Hypernetwork: delta_scale must be > 0, got {delta_scale!r}")
        self.k, self.d_in, self.width, self.d_out, self.mip = k, d_in, width, d_out, bool(mip)
        self.shapes = [(width, d_in), (width,), (d_out, width), (d_out,)]
        self.n_params = sum(math.prod(s) for s in self.shapes)
        fan_ins = [d_in, d_in, width, width]
        scale = torch.cat([torch.full((math.prod(s),), f ** -0.5) for s, f in zip(self.shapes, fan_ins)])
        self.register_buffer("scale", scale.to(dtype or torch.get_default_dtype()))
        k_in = 2 * k if mip else k
        self.net = nn.Sequential(nn.Linear(k_in, hidden, dtype=dtype), nn.ReLU(),
                                 nn.Linear(hidden, hidden, dtype=dtype), nn.ReLU(),
                                 nn.Linear(hidden, self.n_params, dtype=dtype))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        # each predicted parameter is multiplied by its primary layer's 1/sqrt(fan_in) (MIP: times delta_scale)
        self.out_gain = delta_scale if mip else 1.0
        self.theta0 = nn.Parameter((torch.rand(self.n_params, dtype=dtype) * 2 - 1) * self.scale * 3**0.5) if mip else None

    def encode(self, gamma: Tensor) -> Tensor:
        if gamma.shape != (self.k,):
            raise ShapeError(f"Hypernetwork expects one conditioning vector gamma of shape ({self.k},), got "
                             f"{tuple(gamma.shape)}")
        return encode_l2(gamma) if self.mip else gamma

    def delta(self, gamma: Tensor) -> Tensor:
        """The hypernetwork's own output: ``Δθ`` (MIP) or ``θ`` (standard), flat ``(n_params,)``."""
        return self.net(self.encode(gamma)) * (self.scale * self.out_gain)

    def weights(self, gamma: Tensor) -> list[Tensor]:
        flat = self.delta(gamma)
        if self.theta0 is not None:
            flat = self.theta0 + flat
        out, i = [], 0
        for s in self.shapes:
            n = math.prod(s)
            out.append(flat[i:i + n].view(s))
            i += n
        return out

    def forward(self, x: Tensor, gamma: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ShapeError(f"Hypernetwork expects x of shape (N, d_in = {self.d_in}), got {tuple(x.shape)}")
        w1, b1, w2, b2 = self.weights(gamma)
        return torch.relu(x @ w1.T + b1) @ w2.T + b2
