"""Shared plumbing of the chunked kernels: argument checks, padding, splitting into chunks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, ShapeError

MODES = ("recurrent", "chunk")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown kernel mode {mode!r}; modes: {', '.join(MODES)}")


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
