"""Parameterized hypercomplex convolutions (PHC): a convolution whose filter bank is a sum of n
Kronecker products, with about 1/n of the dense convolution's parameters."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..registry import Paper
from ._common import wide_dtype
from .channels.phm import _check_n

PHC_PAPER = Paper("PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex Convolutions", 2021, "2110.04176")
PHC_MODES = ("kron", "factored")
_CONV = {1: F.conv1d, 2: F.conv2d}


def _pair(name: str, v: int | Sequence[int], dims: int) -> tuple[int, ...]:
    t = (v,) * dims if isinstance(v, int) and not isinstance(v, bool) else tuple(v)  # type: ignore[arg-type]
    if len(t) != dims or any(isinstance(e, bool) or not isinstance(e, int) for e in t):
        raise ConfigError(f"PHConv: {name} must be an int or {dims} ints, got {v!r}")
    return t


class PHConv(nn.Module):
    r"""Parameterized hypercomplex convolution, 1-D or 2-D.

    Paper: Grassucci, Zhang & Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
    Hypercomplex Convolutions", 2021, arXiv:2110.04176 (the PHC layer; the PHM linear layer it
    extends is ``layerlab.blocks.channels.phm.PHMLinear``, Zhang et al. 2021, arXiv:2102.08597).

    Equation, with ``s = out_channels``, ``d = in_channels`` and ``k`` the kernel size::

        y = H * x + b,      H = sum_{i=1}^{n} A_i ⊗ F_i,
        A_i in R^{n x n}    (``A``, (n, n, n): the learned algebra / convolution rule),
        F_i in R^{s/n x d/n x k (x k)}   (``F``: the filter blocks),

    the Kronecker product taken over the channel dimensions, kernel entry by kernel entry:
    ``H[(p,a), (q,b), ...] = sum_i A_i[p, q] F_i[a, b, ...]``. ``*`` is the ordinary convolution
    (``stride``, ``padding``, ``dilation`` as in PyTorch). Free parameters: ``n^3 + s d k^dims / n``
    (+ ``s`` for the bias) instead of ``s d k^dims``: about 1/n. With ``n = 4`` and ``A`` fixed to
    the Hamilton product's sign pattern the layer is a quaternion convolution; ``n = 1`` is a dense
    convolution.

    Shape: ``(B, d, L)`` (``dims = 1``) or ``(B, d, H, W)`` (``dims = 2``) -> ``(B, s, ...)``.

    Forms (``forward(x, mode=...)``): ``"kron"`` (default, the reference) builds ``H`` and runs one
    dense convolution; ``"factored"`` never builds ``H``: the input's n channel blocks ``x_q`` are
    each convolved with every ``F_i`` (one convolution over a batch n times larger), then mixed,
    ``y_p = sum_{i,q} A_i[p, q] (F_i * x_q)``. Both cost ``s d k^dims`` multiply-adds per output
    position (the 1/n saving is in parameters); tested equal.

    Initialization (as ``PHMLinear``, derivation there): ``F`` i.i.d. ``U(-1/sqrt(f), 1/sqrt(f))``
    with ``f = d k^dims`` the dense layer's fan-in, and each ``(A_1[p,q], ..., A_n[p,q])`` uniform on
    the unit sphere, so that every entry of ``H`` has exactly the variance ``1/(3 f)`` of PyTorch's
    default convolution init, for every draw of ``A``; bias ``U(-1/sqrt(f), 1/sqrt(f))``. The paper
    states no initialization; this one is ours.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        n: int = 4,
        dims: int = 2,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = _check_n(n)
        if dims not in _CONV:
            raise ConfigError(f"PHConv: dims must be 1 or 2 (Conv1d- or Conv2d-like), got {dims!r}")
        for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(c, bool) or not isinstance(c, int) or c < 1 or c % n:
                raise ConfigError(f"PHConv: {name} = {c!r} must be a positive multiple of n = {n}; "
                                  f"choose {name} divisible by n or an n that divides it")
        self.in_channels, self.out_channels, self.n, self.dims = in_channels, out_channels, n, dims
        self.kernel_size = _pair("kernel_size", kernel_size, dims)
        if any(k < 1 for k in self.kernel_size):
            raise ConfigError(f"PHConv: kernel_size must be >= 1, got {kernel_size!r}")
        self.stride = _pair("stride", stride, dims)
        self.padding = _pair("padding", padding, dims)
        self.dilation = _pair("dilation", dilation, dims)
        factory = {"device": device, "dtype": dtype}
        self.A = nn.Parameter(torch.empty(n, n, n, **factory))
        self.F = nn.Parameter(torch.empty(n, out_channels // n, in_channels // n, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return self.in_channels * math.prod(self.kernel_size)

    def reset_parameters(self) -> None:
        bound = self.fan_in ** -0.5
        with torch.no_grad():
            a = torch.randn(self.n, self.n, self.n, device=self.A.device, dtype=wide_dtype(self.A.dtype))
            self.A.copy_(a / a.norm(dim=0, keepdim=True))
            nn.init.uniform_(self.F, -bound, bound)
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound)

    def weight(self) -> Tensor:
        """The dense filter bank ``H = sum_i A_i ⊗ F_i``: ``(out_channels, in_channels, *kernel_size)``."""
        H = torch.einsum("ipq,iab...->paqb...", self.A, self.F)
        return H.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return _CONV[self.dims](x, weight, bias, self.stride, self.padding, self.dilation)

    def forward(self, x: Tensor, mode: str = "kron") -> Tensor:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(f"PHConv expects input of shape (B, in_channels = {self.in_channels}, "
                             f"{'L' if self.dims == 1 else 'H, W'}); got {tuple(x.shape)}")
        if mode not in PHC_MODES:
            raise ConfigError(f"PHConv: mode must be one of {PHC_MODES}, got {mode!r}")
        if mode == "kron":
            return self._conv(x, self.weight(), self.bias)
        n, B = self.n, x.shape[0]
        blocks = x.reshape(B * n, self.in_channels // n, *x.shape[2:])  # x_q, batch-major
        Z = self._conv(blocks, self.F.reshape(self.out_channels, self.in_channels // n, *self.kernel_size), None)
        Z = Z.reshape(B, n, n, self.out_channels // n, *Z.shape[2:])  # (B, q, i, a, ...): F_i * x_q
        y = torch.einsum("ipq,bqia...->bpa...", self.A, Z).reshape(B, self.out_channels, *Z.shape[4:])
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, *([1] * self.dims))
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, n={self.n}, "
                f"dims={self.dims}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}")
