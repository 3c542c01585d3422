r"""The diagonal linear recurrence ``h_t = a_t h_{t-1} + b_t`` over dim 1, real or complex.

The recurrence of LRU (Orvieto et al., "Resurrecting Recurrent Neural Networks for Long
Sequences", 2023, arXiv:2303.06349; complex ``a_t = lambda``) and of RG-LRU (De et al., "Griffin:
Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models", 2024,
arXiv:2402.19427; real, input-dependent ``a_t``). ``a, b``: ``(B, L, ...)`` of one shape and
dtype (float32/64, complex64/128); ``h0``: ``(B, ...)`` or None (zero). Returns every ``h_t``,
the shape of ``b``.

Forms (``mode``):

- ``"recurrent"``: token by token (the reference).
- ``"scan"``: pure PyTorch, the odd-even parallel scan (pairs compose associatively,
  ``(a, b) then (a', b') = (a' a, a' b + b')``; Blelloch, 1990): ``O(L)`` work in ``O(log L)``
  rounds of whole-tensor ops.
- ``"fused"`` (default): one sequential pass per (batch, block of 64 columns) in the C++/OpenMP
  extension of :mod:`layerlab.kernels.selective_scan` (built on first use), with the backward
  written by hand: ``dh_t = dy_t + conj(a_{t+1}) dh_{t+1}``, ``da_t = dh_t conj(h_{t-1})``,
  ``db_t = dh_t`` (PyTorch's complex convention), reading ``h_{t-1}`` from the forward's output.
  Where the extension is switched off or cannot be built, on other devices and under
  ``torch.func`` transforms it runs ``"scan"``; a double backward differentiates ``"scan"``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from . import selective_scan as _ext

MODES = ("fused", "scan", "recurrent")
_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _check(a: Tensor, b: Tensor, h0: Tensor | None) -> None:
    if a.shape != b.shape or b.dim() < 2 or b.shape[1] < 1:
        raise ShapeError(f"linear_recurrence expects a and b of one shape (B, L, ...) with L >= 1; got "
                         f"a {tuple(a.shape)}, b {tuple(b.shape)}")
    if h0 is not None and (h0.shape[0] != b.shape[0] or h0.shape[1:] != b.shape[2:]):
        raise ShapeError(f"linear_recurrence: h0 must have shape {(b.shape[0], *b.shape[2:])}; got {tuple(h0.shape)}")
    dtypes = {a.dtype, b.dtype} | ({h0.dtype} if h0 is not None else set())
    if len(dtypes) > 1 or b.dtype not in _DTYPES:
        raise ConfigError(f"linear_recurrence: a, b (and h0) must share one dtype among float32, float64, "
                          f"complex64, complex128; got {', '.join(map(str, dtypes))} (cast them first)")


def linear_recurrence_loop(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """Reference form: ``h_t = a_t h_{t-1} + b_t`` token by token."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def linear_recurrence_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """Pure-PyTorch fast form: the odd-even parallel scan (the initial state folded into b_0)."""
    if h0 is not None:
        b = torch.cat((b[:, :1] + a[:, :1] * h0.unsqueeze(1), b[:, 1:]), dim=1)
    return _ext._odd_even_scan(a, b)


class _FusedRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):
        h = _ext.extension().linear_recurrence_forward(a, b, a.new_empty(0) if h0 is None else h0)
        ctx.save_for_backward(a, b, h0, h)
        return h

    @staticmethod
    def backward(ctx, gh):
        a, b, h0, h = ctx.saved_tensors
        wanted = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: differentiate the PyTorch form, keeping its graph
            a, b, h0 = _ext.fresh_inputs(a, b, h0)
            inputs = [t for t, w in zip((a, b, h0), wanted) if w]
            grads = iter(torch.autograd.grad(linear_recurrence_scan(a, b, h0), inputs, gh, create_graph=True,
                                             allow_unused=True))
            return tuple(next(grads) if w else None for w in wanted)
        ga, gb, gh0 = _ext.extension().linear_recurrence_backward(
            a, h, a.new_empty(0) if h0 is None else h0, gh.contiguous())
        return ga, gb, (gh0 if h0 is not None else None)


def linear_recurrence(a: Tensor, b: Tensor, h0: Tensor | None = None, *, mode: str = "fused") -> Tensor:
    """All states ``h_t`` (the shape of ``b``) of ``h_t = a_t h_{t-1} + b_t``, in ``mode``."""
    _check(a, b, h0)
    if mode == "recurrent":
        return linear_recurrence_loop(a, b, h0)
    if mode not in MODES:
        raise ConfigError(f"unknown linear_recurrence mode {mode!r}; modes: {', '.join(MODES)}")
    tensors = [a, b] + ([] if h0 is None else [h0])
    if mode == "fused" and _ext._fused_applies(tensors):
        Bsz, L = b.shape[:2]
        a3, b3 = a.reshape(Bsz, L, -1).contiguous(), b.reshape(Bsz, L, -1).contiguous()
        h03 = None if h0 is None else h0.reshape(Bsz, -1).contiguous()
        return _FusedRecurrence.apply(a3, b3, h03).reshape(b.shape)
    return linear_recurrence_scan(a, b, h0)
