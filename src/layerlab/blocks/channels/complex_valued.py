r"""Complex-valued layers: a complex linear map and complex activations, as a channel mixer.

Paper: Dramsch, Lüthje & Christensen, "Complex-valued neural networks for machine learning on
non-stationary physical data", 2019, arXiv:1905.12321 (complex-valued networks keep the phase that
real-valued ones discard; the complex product is written out in real arithmetic, Section 2).

The D real features are read as D/2 complex numbers z = x_{:D/2} + i x_{D/2:}, and::

    CMLP(z) = W₂ σ(W₁ z + b₁) + b₂,     W₁ ∈ C^{H×D/2}, W₂ ∈ C^{D/2×H}, b ∈ C
    (A + iB)(u + iv) = (Au - Bv) + i(Av + Bu)               (the complex product in real arithmetic)

with σ one of
- ``"crelu"``: CReLU(z) = ReLU(Re z) + i ReLU(Im z) (Trabelsi et al. 2018, "Deep Complex Networks",
  arXiv:1705.09792, the activation of the complex layers the paper builds on);
- ``"modrelu"``: modReLU(z) = ReLU(|z| + b) z/|z| with a learned real b per unit (Arjovsky, Shah &
  Bengio 2016, arXiv:1511.06464): it keeps the phase of z, so a bias-free CMLP with modReLU
  commutes with a global phase rotation, f(e^{iθ} z) = e^{iθ} f(z).
The output y is returned as [Re y, Im y] (D real features).

Forms: ``"real"`` (default: the block-real products above, any real dtype) and ``"reference"``
(PyTorch complex tensors, float32/float64), tested equal. Initialization: Re W and Im W i.i.d.
N(0, 1/(2 fan_in)), so E|w|² = 1/fan_in (a Rayleigh modulus with uniform phase, Trabelsi et al.'s
He-like complex init), complex biases zero, modReLU's b = 0. Options: ``hidden`` (complex units H,
default D, i.e. 2D real numbers), ``activation``, ``bias``. |z| is computed as √(Re² + Im² + ε²).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError, unknown_name
from ...registry import Paper, register
from .._common import check_last_dim

PAPER = Paper("Complex-valued neural networks for machine learning on non-stationary physical data", 2019,
              "1905.12321")
ACTIVATIONS = ("crelu", "modrelu")
MODES = ("real", "reference")
EPS = 1e-6


class ComplexLinear(nn.Module):
    """W z + b with complex W (out × in) and b, parameters held as real and imaginary parts."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        std = math.sqrt(1.0 / (2 * in_features))
        self.weight_re = nn.Parameter(torch.randn(out_features, in_features, **kw) * std)
        self.weight_im = nn.Parameter(torch.randn(out_features, in_features, **kw) * std)
        self.bias_re = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None
        self.bias_im = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None

    def real_form(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """(Re, Im) of W (u + iv) + b in real arithmetic."""
        A, B = self.weight_re, self.weight_im
        re, im = u @ A.T - v @ B.T, u @ B.T + v @ A.T
        if self.bias_re is not None:
            re, im = re + self.bias_re, im + self.bias_im
        return re, im

    def complex_form(self, z: Tensor) -> Tensor:
        """W z + b with complex tensors."""
        w = torch.complex(self.weight_re, self.weight_im).to(z.dtype)
        out = z @ w.T
        if self.bias_re is not None:
            out = out + torch.complex(self.bias_re, self.bias_im).to(z.dtype)
        return out


@register("channel", "complex_mlp", paper=PAPER)
class ComplexMLP(nn.Module):
    """Two complex linear layers around a complex activation, CMLP(z) = W₂ σ(W₁ z + b₁) + b₂.

    Paper: Dramsch, Lüthje & Christensen, "Complex-valued neural networks for machine learning on
    non-stationary physical data", 2019, arXiv:1905.12321. Shape: (..., D) -> (..., D), D even
    (D/2 complex numbers). See the module docstring for the equations, forms and options.
    """

    modes = MODES

    def __init__(self, d_model: int, *, hidden: int | None = None, activation: str = "crelu", bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if d_model < 2 or d_model % 2:
            raise ConfigError(f"complex_mlp: d_model must be even (D/2 complex numbers), got {d_model}")
        if activation not in ACTIVATIONS:
            raise unknown_name("complex activation", activation, ACTIVATIONS)
        hidden = d_model if hidden is None else int(hidden)
        if hidden < 1:
            raise ConfigError(f"complex_mlp: hidden (complex units) must be >= 1, got {hidden}")
        self.d_model, self.hidden, self.activation = d_model, hidden, activation
        kw = dict(device=device, dtype=dtype)
        self.fc1 = ComplexLinear(d_model // 2, hidden, bias=bias, **kw)
        self.fc2 = ComplexLinear(hidden, d_model // 2, bias=bias, **kw)
        self.mod_bias = nn.Parameter(torch.zeros(hidden, **kw)) if activation == "modrelu" else None

    @classmethod
    def width_multiple(cls, **options: Any) -> int:
        return 2

    def _act_real(self, re: Tensor, im: Tensor) -> tuple[Tensor, Tensor]:
        if self.activation == "crelu":
            return torch.relu(re), torch.relu(im)
        mod = torch.sqrt(re.square() + im.square() + EPS ** 2)
        gain = torch.relu(mod + self.mod_bias) / mod
        return re * gain, im * gain

    def _act_complex(self, z: Tensor) -> Tensor:
        if self.activation == "crelu":
            return torch.complex(torch.relu(z.real), torch.relu(z.imag))
        mod = torch.sqrt(z.real.square() + z.imag.square() + EPS ** 2)
        return z * (torch.relu(mod + self.mod_bias.to(mod.dtype)) / mod)

    def forward(self, x: Tensor, mode: str = "real") -> Tensor:
        check_last_dim(self, x)
        half = self.d_model // 2
        if mode == "real":
            re, im = self.fc1.real_form(x[..., :half], x[..., half:])
            re, im = self.fc2.real_form(*self._act_real(re, im))
            return torch.cat([re, im], dim=-1)
        if mode != "reference":
            raise unknown_name("complex_mlp mode", str(mode), MODES)
        if x.dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"complex_mlp: the reference form uses complex tensors, which need float32 or float64 "
                              f"inputs, got {x.dtype}; use mode='real'")
        z = torch.complex(x[..., :half], x[..., half:])
        y = self.fc2.complex_form(self._act_complex(self.fc1.complex_form(z)))
        return torch.cat([y.real, y.imag], dim=-1)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden} (complex), activation={self.activation!r}"
