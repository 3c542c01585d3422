r"""The Linearizer: a linear operator between two invertible networks, as a channel mixer.

Paper: Berman, Hallak & Shocher, "Who Said Neural Networks Aren't Linear?", 2025, arXiv:2510.08570.

The architecture and the vector spaces it induces (Section 3)::

    f(x) = g_y⁻¹(A g_x(x))                               g_x, g_y invertible networks, A a matrix
    v₁ ⊕_g v₂ := g⁻¹(g(v₁) + g(v₂)),    a ⊙_g v := g⁻¹(a · g(v))    (the induced operations)
    f(a₁ ⊙_{g_x} x₁ ⊕_{g_x} a₂ ⊙_{g_x} x₂) = a₁ ⊙_{g_y} f(x₁) ⊕_{g_y} a₂ ⊙_{g_y} f(x₂)   (f is linear)

so f, nonlinear in the Euclidean sense, is linear from (R^D, ⊕_{g_x}, ⊙_{g_x}) to
(R^D, ⊕_{g_y}, ⊙_{g_y}); its pseudo-inverse is f⁺(y) = g_x⁻¹(A⁺ g_y(y)), and two Linearizers that
share a network compose into one: g_z⁻¹(B g_y(g_y⁻¹(A g_x(x)))) = g_z⁻¹(BA g_x(x)).

The invertible networks here are stacks of ``depth`` affine coupling layers (Dinh, Sohl-Dickstein &
Bengio 2016, "Density estimation using Real NVP", arXiv:1605.08803; the paper leaves the choice of
invertible network open), the halves alternating::

    y_a = x_a,   y_b = x_b ⊙ exp(s(x_a)) + t(x_a),   s = tanh(ŝ) (a log-scale in (-1, 1))
    inverse:     x_b = (y_b - t(y_a)) ⊙ exp(-s(y_a))

with [ŝ, t] = W₂ GELU(W₁ x_a + b₁) + b₂ (hidden width ``hidden``, default D).

Shape: ``(..., D) -> (..., D)``, D >= 2. Initialization: W₁, b₁ fan-in uniform, W₂ = b₂ = 0 (each
coupling starts as the identity, as in Glow), A fan-in uniform U(±1/√D) (no bias: f must stay
linear in the induced spaces), so the block starts as the linear map x -> A x.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import check_last_dim, init_linear

PAPER = Paper("Who Said Neural Networks Aren't Linear?", 2025, "2510.08570")


class AffineCoupling(nn.Module):
    """One affine coupling layer; ``flip`` chooses which half conditions the other."""

    def __init__(self, d: int, hidden: int, *, flip: bool, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.d_a = d // 2 if not flip else d - d // 2  # the conditioning half
        self.flip = flip
        d_b = d - self.d_a
        self.fc1 = nn.Linear(self.d_a, hidden, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, 2 * d_b, device=device, dtype=dtype)
        init_linear(self.fc1)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.flip:  # condition on the second part
            return x[..., -self.d_a:], x[..., :-self.d_a]
        return x[..., :self.d_a], x[..., self.d_a:]

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([b, a] if self.flip else [a, b], dim=-1)

    def _scale_shift(self, a: Tensor) -> tuple[Tensor, Tensor]:
        s_hat, t = self.fc2(F.gelu(self.fc1(a))).chunk(2, dim=-1)
        return torch.tanh(s_hat), t

    def forward(self, x: Tensor) -> Tensor:
        a, b = self._split(x)
        s, t = self._scale_shift(a)
        return self._join(a, b * torch.exp(s) + t)

    def inverse(self, y: Tensor) -> Tensor:
        a, b = self._split(y)
        s, t = self._scale_shift(a)
        return self._join(a, (b - t) * torch.exp(-s))


class InvertibleNet(nn.Module):
    """g = c_depth ∘ ... ∘ c_1 (affine couplings, halves alternating), with its exact inverse."""

    def __init__(self, d: int, hidden: int, depth: int, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AffineCoupling(d, hidden, flip=bool(i % 2), device=device, dtype=dtype)
                                    for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def induced_add(g: InvertibleNet, v1: Tensor, v2: Tensor) -> Tensor:
    """v₁ ⊕_g v₂ = g⁻¹(g(v₁) + g(v₂))."""
    return g.inverse(g(v1) + g(v2))


def induced_scale(g: InvertibleNet, a: float | Tensor, v: Tensor) -> Tensor:
    """a ⊙_g v = g⁻¹(a · g(v))."""
    return g.inverse(a * g(v))


@register("channel", "linearizer", paper=PAPER)
class Linearizer(nn.Module):
    """f(x) = g_y⁻¹(A g_x(x)): linear between the vector spaces g_x and g_y induce.

    Paper: Berman, Hallak & Shocher, "Who Said Neural Networks Aren't Linear?", 2025,
    arXiv:2510.08570. Shape: (..., D) -> (..., D), D >= 2. See the module docstring for the
    equations. Options: ``depth`` (coupling layers per network, default 2), ``hidden`` (the
    couplings' hidden width, default D).
    """

    def __init__(self, d_model: int, *, depth: int = 2, hidden: int | None = None, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        hidden = d_model if hidden is None else int(hidden)
        if d_model < 2:
            raise ConfigError(f"linearizer: d_model must be >= 2 (a coupling layer splits the features in two), "
                              f"got {d_model}")
        if depth < 1 or hidden < 1:
            raise ConfigError(f"linearizer: depth and hidden must be >= 1, got {depth}, {hidden}")
        self.d_model = d_model
        kw = dict(device=device, dtype=dtype)
        self.g_x = InvertibleNet(d_model, hidden, depth, **kw)
        self.g_y = InvertibleNet(d_model, hidden, depth, **kw)
        self.A = nn.Linear(d_model, d_model, bias=False, **kw)
        init_linear(self.A)

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x)
        return self.g_y.inverse(self.A(self.g_x(x)))

    def pseudo_inverse(self, y: Tensor) -> Tensor:
        """f⁺(y) = g_x⁻¹(A⁺ g_y(y)); equal to f⁻¹ where A is invertible."""
        check_last_dim(self, y)
        a_pinv = torch.linalg.pinv(self.A.weight.to(torch.promote_types(y.dtype, torch.float32)))
        return self.g_x.inverse(self.g_y(y) @ a_pinv.T.to(y.dtype))
