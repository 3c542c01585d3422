"""Normalization layers over the last dimension: LayerNorm and RMSNorm.

Both compute their statistics in float32 or wider (float64 input stays float64) and return the
input's dtype, so a bfloat16 activation is normalized with float32 statistics.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..registry import Paper, register


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed in: float32 or wider."""
    return torch.promote_types(dtype, torch.float32)


def _check(block: nn.Module, x: Tensor) -> None:
    if x.dim() < 1 or x.shape[-1] != block.d_model:
        raise ShapeError(
            f"{type(block).__name__} expects input of shape (..., D) with D = d_model = "
            f"{block.d_model}; got {tuple(x.shape)}"
        )


@register("norm", "layernorm", paper=Paper("Layer Normalization", 2016, "1607.06450"))
class LayerNorm(nn.Module):
    r"""Layer normalization over the last dimension.

    Paper: Ba, Kiros & Hinton, "Layer Normalization", 2016, arXiv:1607.06450 (Eq. 4).

    Equation, over the ``H = d_model`` features ``a_i`` of one position::

        mu = (1/H) sum_i a_i,   sigma = sqrt((1/H) sum_i (a_i - mu)^2 + eps)
        h_i = g_i (a_i - mu) / sigma + b_i

    (the paper writes ``sigma`` without ``eps``; ``eps`` guards constant inputs, as in PyTorch).

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider, output in the input dtype.

    Initialization: gain ``g = 1``, bias ``b = 0``.

    Options (PyTorch's names): ``eps``, ``bias`` (learn ``b``), ``elementwise_affine``
    (learn ``g`` and, if ``bias``, ``b``; False gives the plain standardization), ``device``,
    ``dtype``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        eps: float = 1e-5,
        bias: bool = True,
        elementwise_affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not eps >= 0:
            raise ConfigError(f"layernorm: eps must be >= 0, got {eps}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = int(d_model)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(d_model, **factory)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.empty(d_model, **factory)) if elementwise_affine and bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        a = x.to(_wide(x.dtype))
        mu = a.mean(dim=-1, keepdim=True)
        var = (a - mu).square().mean(dim=-1, keepdim=True)
        h = (a - mu) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            h = h * self.weight.to(h.dtype)
        if self.bias is not None:
            h = h + self.bias.to(h.dtype)
        return h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}, affine={self.weight is not None}, bias={self.bias is not None}"


@register(
    "norm", "rmsnorm", paper=Paper("Root Mean Square Layer Normalization", 2019, "1910.07467")
)
class RMSNorm(nn.Module):
    r"""Root-mean-square normalization over the last dimension (no centering, no bias).

    Paper: Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019, arXiv:1910.07467
    (Eq. 4).

    Equation, over the ``n = d_model`` features ``a_i`` of one position::

        RMS(a) = sqrt((1/n) sum_i a_i^2 + eps),   y_i = a_i / RMS(a) * g_i

    Shape: ``(..., D) -> (..., D)``. Statistics in float32 or wider, output in the input dtype.
    With ``g = 1`` every output position has root mean square ``sqrt(ms / (ms + eps))``, i.e. 1
    up to ``eps / (2 ms)``.

    Initialization: gain ``g = 1``.

    Options: ``eps`` (inside the square root, as in PyTorch's ``nn.RMSNorm``; the paper's Eq. 4
    has none), ``device``, ``dtype``. The paper's optional bias and partial RMSNorm (pRMSNorm)
    are not implemented.
    """

    def __init__(
        self,
        d_model: int,
        *,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not eps >= 0:
            raise ConfigError(f"rmsnorm: eps must be >= 0, got {eps}")
        self.d_model = int(d_model)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(d_model, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        a = x.to(_wide(x.dtype))
        rms = torch.sqrt(a.square().mean(dim=-1, keepdim=True) + self.eps)
        return (a / rms * self.weight.to(a.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"
