r"""Per-layer nuclear norms of weight gradients.

Paper: Li, Li & Zhou, "What Happened in LLMs Layers when Trained for Fast vs. Slow Thinking: A
Gradient Perspective", 2024 (ACL 2025), arXiv:2410.23743: the gradient ``G = ∂L/∂W`` of each
weight matrix of a layer (the attention projections there) is analysed by its SVD and
summarized by its nuclear norm

    ||G||_* = Σ_i σ_i(G),

and the paper compares these per layer between fast (no chain-of-thought) and slow (detailed
chain-of-thought) training data. ``nuclear_norms`` computes them from the gradients already in
``.grad`` (or given), in float64; tensors with more than two dimensions are flattened to
``(shape[0], -1)``, vectors and scalars are skipped (no matrix).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError


def nuclear_norms(model: nn.Module, grads: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """``{parameter: ||∂L/∂W||_*}`` for every matrix parameter with a gradient."""
    if grads is None:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    if not grads:
        raise ConfigError("nuclear_norms: no gradients; run backward() first or pass grads={name: tensor}")
    out = {}
    for name, g in grads.items():
        if g is None or g.dim() < 2:
            continue
        out[name] = float(torch.linalg.matrix_norm(g.detach().double().reshape(g.shape[0], -1), ord="nuc"))
    return out
