"""Linear recurrences ``h_t = a_t * h_{t-1} + b_t`` over dim 1: a parallel scan and the plain loop.

The recurrence is elementwise (diagonal): ``a`` and ``b`` have the same shape ``(B, L, ...)``,
real or complex, and the state starts at ``h_{-1} = h0`` (zero by default). The pairs
``(a_t, b_t)`` compose associatively, ``(a, b) then (a', b') = (a' a, a' b + b')``, which is what
makes a parallel scan possible (Blelloch, "Prefix Sums and Their Applications", 1990; used for
linear RNNs by Martin & Cundy, "Parallelizing Linear Recurrent Neural Nets Over Sequence
Length", 2018, arXiv:1709.04057).

``linear_scan`` is the odd-even (work-efficient) form: combine neighbouring pairs, scan the
half-length sequence of pairs recursively, then fill in the even positions. ``O(L)`` work,
``O(log L)`` sequential depth, each level a handful of whole-tensor torch ops, so autograd
differentiates it as it is. Transitions are multiplied directly, never through logarithms: a
negative or complex ``a_t`` needs no sign handling, and with ``|a_t| <= 1`` no partial product
can overflow (products of many small factors underflow gracefully to zero).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ShapeError


def _check(a: Tensor, b: Tensor, h0: Tensor | None) -> None:
    if a.shape != b.shape or b.dim() < 2:
        raise ShapeError(f"linear scan expects a and b of the same shape (B, L, ...); got "
                         f"a {tuple(a.shape)}, b {tuple(b.shape)}")
    if h0 is not None and (h0.shape[0] != b.shape[0] or h0.shape[1:] != b.shape[2:]):
        expected = (b.shape[0], *b.shape[2:])
        raise ShapeError(f"initial state h0 must have shape {expected}; got {tuple(h0.shape)}")


def linear_recurrence_loop(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` token by token (the reference); returns all ``h_t``, shape of ``b``."""
    _check(a, b, h0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for all t at once by a parallel (odd-even) scan over dim 1.

    ``a``, ``b``: ``(B, L, ...)``, same shape, real or complex; ``h0``: ``(B, ...)`` or None (zero).
    Returns ``h`` of the shape of ``b``. Equals :func:`linear_recurrence_loop` up to rounding.
    """
    _check(a, b, h0)
    if h0 is not None:  # fold the initial state into the first input
        b = torch.cat((b[:, :1] + a[:, :1] * h0.unsqueeze(1), b[:, 1:]), dim=1)
    return _odd_even_scan(a, b)


def _odd_even_scan(a: Tensor, b: Tensor) -> Tensor:
    L = b.shape[1]
    if L == 1:
        return b
    n = L // 2
    a_even, a_odd = a[:, 0:2 * n:2], a[:, 1:2 * n:2]
    b_even, b_odd = b[:, 0:2 * n:2], b[:, 1:2 * n:2]
    # pair k composes step 2k then step 2k+1; scanning the pairs gives h at the odd positions
    h_odd = _odd_even_scan(a_odd * a_even, a_odd * b_even + b_odd)
    # even positions 2k >= 2 take one more step from h_{2k-1}
    m = (L - 1) // 2
    h_even = torch.cat((b[:, :1], a[:, 2::2] * h_odd[:, :m] + b[:, 2::2]), dim=1)
    woven = torch.stack((h_even[:, :n], h_odd), dim=2).flatten(1, 2)
    if L % 2:
        woven = torch.cat((woven, h_even[:, n:]), dim=1)
    return woven
