"""Small checks and conventions every block family shares.

- ``wide_dtype``: the dtype statistics are computed in (float32 or wider);
- ``check_last_dim``: the ``(..., D)`` input check with a ShapeError that names D;
- ``check_hidden_options``, ``init_linear``: the MLP-style width options and the fan-in init;
- ``WideBuffers``: a module mixin whose named float buffers stay float32 or wider under
  ``module.to(torch.bfloat16)`` (and ``.half()``), as the blocks' docstrings promise.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics and activations are computed in: float32 or wider (float64 stays)."""
    return torch.promote_types(dtype, torch.float32)


def check_last_dim(block: nn.Module, x: Tensor, width: int | None = None, name: str = "d_model") -> None:
    """Inputs of shape (..., D) with D = ``width`` (default ``block.d_model``); a ShapeError naming
    both otherwise. ``name`` is what D is called in the message (e.g. ``"in_features"``)."""
    expected = block.d_model if width is None else width
    if x.dim() < 1 or x.shape[-1] != expected:
        raise ShapeError(
            f"{type(block).__name__} expects input of shape (..., D) with D = {name} = "
            f"{expected}; got {tuple(x.shape)}"
        )


def check_hidden_options(name: str, hidden: int | None, expansion: float, dropout: float) -> None:
    """The options of an MLP-shaped block: ``hidden >= 1`` (or None for ``expansion * d_model``),
    ``expansion > 0``, ``dropout`` in [0, 1); a ConfigError naming the block otherwise."""
    if hidden is not None and int(hidden) < 1:
        raise ConfigError(f"{name}: hidden must be >= 1 (or None to use expansion), got {hidden}")
    if hidden is None and not expansion > 0:
        raise ConfigError(f"{name}: expansion must be > 0, got {expansion}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout}")


def init_linear(linear: nn.Linear) -> None:
    """Fan-in scaled: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1/(3 fan_in)."""
    bound = linear.in_features ** -0.5
    nn.init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        nn.init.uniform_(linear.bias, -bound, bound)


class WideBuffers(nn.Module):
    """Mixin: the float buffers named in ``wide_buffers`` keep float32 or wider precision.

    ``module.to(dtype)``, ``.half()``, ``.bfloat16()`` cast every floating-point buffer; a buffer
    that holds statistics or knots (a running variance, spline knots, k-means keys) would lose
    its precision in bfloat16. After any such conversion each named buffer is rebuilt from its
    value before the conversion, on the new device, in ``wide_dtype`` of the dtype the
    conversion asked for: bfloat16/float16 give float32 (the exact old values when they were
    float32), ``.double()`` gives float64, ``.float()`` float32. Device moves are unaffected.

    Buffers that are meant to follow the module's dtype are listed in ``dtype_buffers`` instead
    (a statement, checked by the block contracts: every float buffer is in one of the two).
    """

    wide_buffers: tuple[str, ...] = ()
    dtype_buffers: tuple[str, ...] = ()

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Any:
        before = {name: self._buffers[name] for name in self.wide_buffers if self._buffers.get(name) is not None}
        out = super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new is not None and new.is_floating_point() and new.dtype != wide_dtype(new.dtype):
                self._buffers[name] = old.to(device=new.device, dtype=wide_dtype(new.dtype))
        return out


def causal_depthwise_conv(u: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Causal depthwise convolution over the sequence, in the (B, L, C) layout::

        y_t = b + sum_{j=0}^{K-1} w[:, j] * u_{t-(K-1)+j}      (u_s = 0 for s < 0)

    what ``F.conv1d(pad(u^T, (K-1, 0)), w[:, None], b, groups=C)`` computes, written as K shifted
    multiply-adds: no transposes, and no depthwise-convolution backward, which is slow on the CPU
    (3x this form's forward + backward at B 64, L 128, C 64). ``weight`` (C, K), ``bias`` (C,).
    """
    K, L = weight.shape[1], u.shape[1]
    padded = torch.nn.functional.pad(u, (0, 0, K - 1, 0))
    w = weight.to(u.dtype)
    out = padded[:, :L] * w[:, 0] if bias is None else torch.addcmul(bias.to(u.dtype), padded[:, :L], w[:, 0])
    for j in range(1, K):
        out = torch.addcmul(out, padded[:, j:j + L], w[:, j])
    return out


def causal_fft_conv(u: Tensor, k: Tensor, dim: int = -1) -> Tensor:
    """Causal convolution along ``dim`` by FFT: ``y_t = sum_{j<=t} k_j u_{t-j}`` (``u`` and ``k`` of the
    same length L there, broadcasting elsewhere). Both are zero-padded to 2L, so nothing wraps
    around: O(L log L) instead of the O(L^2) sum it equals."""
    n = 2 * u.shape[dim]
    y = torch.fft.irfft(torch.fft.rfft(u, n=n, dim=dim) * torch.fft.rfft(k, n=n, dim=dim), n=n, dim=dim)
    return y.narrow(dim, 0, u.shape[dim])
