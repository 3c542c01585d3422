"""Linear recurrences with dense (block) transitions: ``h_t = A_t h_{t-1} + b_t`` over dim 1.

Per block, ``A_t`` is a small dense ``n x n`` matrix: ``A`` has shape ``(B, L, ..., n, n)`` and
``b`` shape ``(B, L, ..., n)`` (the ``...`` axes are independent blocks, e.g. heads). The pairs
``(A_t, b_t)`` compose associatively, ``(A, b) then (A', b') = (A' A, A' b + b')``, so all
``h_t`` follow from a parallel scan (Blelloch 1990; for linear RNNs, Martin & Cundy 2018,
arXiv:1709.04057), as for diagonal transitions in :mod:`layerlab.blocks.mixers.scan`, with
matrix products in place of elementwise ones: ``O(L n^3)`` work, ``O(log L)`` depth.

``matrix_recurrence_loop`` is the recurrence written out; ``matrix_scan`` the odd-even
(work-efficient) scan: combine neighbouring pairs, scan the half-length sequence recursively,
fill in the even positions. Both are plain torch ops, differentiated by autograd. Shared by the
block-diagonal and dense input-dependent recurrences (``block_lrnn``, ``bilinear_rnn``, ``slice``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ShapeError


def _check(A: Tensor, b: Tensor, h0: Tensor | None) -> None:
    if b.dim() < 3 or A.shape != (*b.shape, b.shape[-1]):
        raise ShapeError(
            "matrix recurrence: A must have shape (B, L, ..., n, n) and b shape (B, L, ..., n) "
            f"(the same leading axes); got A {tuple(A.shape)} and b {tuple(b.shape)}"
        )
    if h0 is not None and h0.shape != (b.shape[0], *b.shape[2:]):
        raise ShapeError(f"matrix recurrence: h0 must have shape (B, ..., n) = "
                         f"{(b.shape[0], *b.shape[2:])}; got {tuple(h0.shape)}")


def _matvec(A: Tensor, h: Tensor) -> Tensor:
    return (A @ h.unsqueeze(-1)).squeeze(-1)


def matrix_recurrence_loop(A: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = A_t h_{t-1} + b_t`` token by token; ``h_{-1} = h0`` (zero by default)."""
    _check(A, b, h0)
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    out = []
    for t in range(b.shape[1]):
        h = _matvec(A[:, t], h) + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def _odd_even(A: Tensor, b: Tensor) -> Tensor:
    """The scan from a zero initial state (A_0 multiplies zero and is never used)."""
    L = b.shape[1]
    if L == 1:
        return b
    n = L // 2
    A_even, A_odd = A[:, 0:2 * n:2], A[:, 1:2 * n:2]
    b_even, b_odd = b[:, 0:2 * n:2], b[:, 1:2 * n:2]
    h_odd = _odd_even(A_odd @ A_even, _matvec(A_odd, b_even) + b_odd)  # h_1, h_3, ..., h_{2n-1}
    m = (L - 1) // 2  # even positions 2, 4, ..., 2m: h_{2i} = A_{2i} h_{2i-1} + b_{2i}
    h_rest = _matvec(A[:, 2::2], h_odd[:, :m]) + b[:, 2::2]
    h_even = torch.cat((b[:, :1], h_rest), dim=1)  # h_0 = b_0
    out = torch.stack((h_even[:, :n], h_odd), dim=2).flatten(1, 2)  # h_0, h_1, ..., h_{2n-1}
    return torch.cat((out, h_even[:, n:]), dim=1) if L % 2 else out


def matrix_scan(A: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = A_t h_{t-1} + b_t`` for all t by a parallel (odd-even) scan over dim 1.

    ``A``: ``(B, L, ..., n, n)``; ``b``: ``(B, L, ..., n)``; ``h0``: ``(B, ..., n)`` or None (zero).
    Returns ``h`` of the shape of ``b``; equals :func:`matrix_recurrence_loop` up to rounding.
    """
    _check(A, b, h0)
    if h0 is not None:  # fold the initial state into the first input: h_0 = A_0 h0 + b_0
        b = torch.cat(((_matvec(A[:, 0], h0) + b[:, 0]).unsqueeze(1), b[:, 1:]), dim=1)
    return _odd_even(A, b)
