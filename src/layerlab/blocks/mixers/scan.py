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

Both forms live in :mod:`layerlab.kernels.linear_recurrence` (beside the fused C++ form); this
module gives the mixers their names, with the shape checks.
"""
from __future__ import annotations

from torch import Tensor

from ...kernels.linear_recurrence import _check, linear_recurrence_loop, linear_recurrence_scan

__all__ = ["linear_recurrence_loop", "linear_scan"]


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for all t at once by a parallel (odd-even) scan over dim 1.

    ``a``, ``b``: ``(B, L, ...)``, same shape, real or complex; ``h0``: ``(B, ...)`` or None (zero).
    Returns ``h`` of the shape of ``b``. Equals :func:`linear_recurrence_loop` up to rounding.
    """
    _check(a, b, h0)
    return linear_recurrence_scan(a, b, h0)
