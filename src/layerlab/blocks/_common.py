"""Small checks and conventions every block family shares."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ShapeError


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics and activations are computed in: float32 or wider (float64 stays)."""
    return torch.promote_types(dtype, torch.float32)


def check_last_dim(block: nn.Module, x: Tensor) -> None:
    """Inputs of shape (..., D) with D = ``block.d_model``; a ShapeError naming both otherwise."""
    if x.dim() < 1 or x.shape[-1] != block.d_model:
        raise ShapeError(
            f"{type(block).__name__} expects input of shape (..., D) with D = d_model = "
            f"{block.d_model}; got {tuple(x.shape)}"
        )
