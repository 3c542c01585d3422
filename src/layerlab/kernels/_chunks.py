"""Shared plumbing of the chunked kernels: argument checks, padding, splitting into chunks, and the
inverse of a unit lower-triangular matrix (the UT transform of the delta-rule kernels)."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, ShapeError

MODES = ("recurrent", "chunk", "fused")  # fused: the C++ kernel where it serves, else chunk


def check_mode(mode: str, modes: tuple[str, ...] = MODES) -> None:
    if mode not in modes:
        raise ConfigError(f"unknown kernel mode {mode!r}; modes: {', '.join(modes)}")


def check_chunk_size(chunk_size: int) -> int:
    """The chunk size as a Python int; a bool, a non-integer or a value < 1 raises ConfigError."""
    try:
        size = None if isinstance(chunk_size, bool) else operator.index(chunk_size)
    except TypeError:
        size = None
    if size is None or size < 1:
        raise ConfigError(f"chunk_size must be a positive integer (e.g. 64), got {chunk_size!r}")
    return size


def check_qkv(q: Tensor, k: Tensor, v: Tensor, initial_state: Tensor | None) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ShapeError(f"expected q, k of shape (B, H, L, D_k) and v of shape (B, H, L, D_v); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, L, Dk = q.shape
    if L < 1:
        raise ShapeError("sequence length must be >= 1")
    if initial_state is not None and initial_state.shape != (B, H, Dk, v.shape[-1]):
        raise ShapeError(f"initial_state must have shape (B, H, D_k, D_v) = {(B, H, Dk, v.shape[-1])}; "
                         f"got {tuple(initial_state.shape)}")


def check_per_token(name: str, x: Tensor | None, q: Tensor) -> None:
    """A per-token scalar (beta, the log decay g) must have shape (B, H, L)."""
    if x is None or x.shape != q.shape[:3]:
        got = None if x is None else tuple(x.shape)
        raise ShapeError(f"{name} must have shape (B, H, L) = {tuple(q.shape[:3])}; got {got}")


def zero_state(q: Tensor, v: Tensor) -> Tensor:
    B, H, _, Dk = q.shape
    return q.new_zeros(B, H, Dk, v.shape[-1])


def to_chunks(x: Tensor, chunk_size: int) -> Tensor:
    """(B, H, L, ...) -> (B, H, N, C, ...), zero-padding L up to a multiple of C."""
    L = x.shape[2]
    pad = (-L) % chunk_size
    if pad:
        widths = [0, 0] * (x.dim() - 3) + [0, pad]
        x = F.pad(x, widths)
    return x.reshape(*x.shape[:2], -1, chunk_size, *x.shape[3:])


def causal_mask(chunk_size: int, device: torch.device, *, strict: bool) -> Tensor:
    """Lower-triangular bool mask (C, C); strict excludes the diagonal."""
    return torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=device).tril(-1 if strict else 0)


def _diagonal_blocks(x: Tensor, b: int) -> Tensor:
    """A view (..., C // b, b, b) of the diagonal b x b blocks of x (..., C, C)."""
    n = x.shape[-1] // b
    return torch.diagonal(x.unflatten(-1, (n, b)).unflatten(-3, (n, b)), dim1=-4, dim2=-2).movedim(-1, -3)


@torch.no_grad()
def _unit_lower_inverse(N: Tensor, base: int = 8) -> Tensor:
    """(I + N)^{-1} for strictly lower-triangular N (..., C, C), by recursive doubling.

    Forward substitution inside diagonal blocks of ``base`` rows, then blocks of size b are merged
    pairwise: inv([[A11, 0], [A21, A22]]) = [[X11, 0], [-X22 A21 X11, X22]]. Every step is one
    batched matmul over all matrices and blocks at once: 1.2-1.6x faster on CPU than a batched
    LAPACK triangular solve of the 256-512 small matrices of a benchmark step (C = 32, 64), and as
    accurate (tested against it).
    """
    C = N.shape[-1]
    Cp = 1 << (C - 1).bit_length()  # pad to a power of two: inv([[A, 0], [0, I]]) = [[A^-1, 0], [0, I]]
    if Cp != C:
        N = F.pad(N, (0, Cp - C, 0, Cp - C))
    X = torch.zeros_like(N)
    X.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    b = min(base, Cp)
    Xb, Nb = _diagonal_blocks(X, b), _diagonal_blocks(N, b)
    for r in range(1, b):  # row r of a block: e_r - sum_{i<r} N[r, i] X[i, :]
        Xb[..., r, :r] = -(Nb[..., r:r + 1, :r] @ Xb[..., :r, :r]).squeeze(-2)
    while b < Cp:
        Xv, Nv = _diagonal_blocks(X, 2 * b), _diagonal_blocks(N, 2 * b)
        Xv[..., b:, :b] = -(Xv[..., b:, b:] @ (Nv[..., b:, :b] @ Xv[..., :b, :b]))
        b *= 2
    return X[..., :C, :C] if Cp != C else X


class _UTSolve(torch.autograd.Function):
    """(T, X_1, ..., X_m) with T = (I + N)^{-1}, X_j = T R_j, for strictly lower-triangular N.

    Backward, from dT = -T dN T: dR_j = T^T dX_j and dN = -tril(sum_j dR_j X_j^T + T^T dT T^T, -1);
    no solve, and without the T^T dT T^T term (T unused downstream) two matmuls per right-hand side.
    The backward uses differentiable ops on the saved outputs only, so double backward (Hessian-vector
    products through a chunked mixer) stays exact.
    """

    @staticmethod
    def forward(ctx, N: Tensor, *rhs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        T = _unit_lower_inverse(N)
        X = tuple(T @ R for R in rhs)
        ctx.save_for_backward(T, *X)
        ctx.set_materialize_grads(False)  # unused outputs (usually T) get None, not zeros to multiply
        return (T, *X)

    @staticmethod
    def backward(ctx, dT: Tensor | None, *dX: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        T, *X = ctx.saved_tensors
        Tt = T.transpose(-1, -2)
        dR = [None if d is None else Tt @ d for d in dX]
        dN = None
        for d, x in zip(dR, X):
            if d is None:
                continue
            if dN is None:
                dN = d @ x.transpose(-1, -2)
            else:  # dN + d x^T in one op
                dN = torch.baddbmm(dN.flatten(0, -3), d.flatten(0, -3), x.flatten(0, -3).transpose(-1, -2)).view_as(dN)
        if dT is not None:
            term = Tt @ dT @ Tt
            dN = term if dN is None else dN + term
        return (None if dN is None else -dN.tril(-1), *dR)


def ut_solve(N: Tensor, *rhs: Tensor) -> tuple[Tensor, ...]:
    """(I + N)^{-1} R for each R in rhs, N (..., C, C) strictly lower-triangular, R (..., C, D); differentiable.

    The UT transform of the delta-rule chunk kernels: one inverse of the unit lower-triangular matrix,
    then matmuls.
    """
    return _UTSolve.apply(N, *rhs)[1:]
