"""The Linearizer's linearity in its induced vector spaces, measured on a random nonlinear instance.

Paper: Berman, Hallak & Shocher, "Who Said Neural Networks Aren't Linear?", 2025, arXiv:2510.08570,
Section 3: for f(x) = g_y⁻¹(A g_x(x)) with invertible g_x, g_y, and the induced operations
v₁ ⊕_g v₂ = g⁻¹(g(v₁) + g(v₂)), a ⊙_g v = g⁻¹(a g(v)),

    f(a₁ ⊙_{g_x} x₁ ⊕_{g_x} a₂ ⊙_{g_x} x₂) = a₁ ⊙_{g_y} f(x₁) ⊕_{g_y} a₂ ⊙_{g_y} f(x₂).

The measurement builds the ``linearizer`` channel (width ``width``, ``depth`` coupling layers per
network) in float64, moves every parameter by ``scale`` · N(0, 1) so the couplings are far from the
identity they start as, draws ``batch`` pairs x₁, x₂ ~ N(0, I) and coefficients a₁, a₂ ~ N(0, 1), and
returns the relative superposition error in the induced spaces (``error``), beside the Euclidean
one, ‖f(a₁x₁ + a₂x₂) - a₁f(x₁) - a₂f(x₂)‖ / ‖a₁f(x₁) + a₂f(x₂)‖ (``euclidean_error``: large, f is
nonlinear in the usual sense), and the inverse's error ‖g(g⁻¹(z)) - z‖ / ‖z‖ (``inverse_error``).
"""
from __future__ import annotations

import torch

from ...blocks.channels.linearizer import PAPER, Linearizer, induced_add, induced_scale
from ...errors import ConfigError
from . import register_measure


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@register_measure("linearizer_superposition", metric="error", paper=PAPER)
def linearizer_superposition(seed: int, *, width: int = 16, depth: int = 4, scale: float = 0.5,
                             batch: int = 256) -> dict[str, float]:
    if width < 2 or depth < 1 or batch < 1 or not scale >= 0:
        raise ConfigError(f"linearizer_superposition: need width >= 2, depth >= 1, batch >= 1, scale >= 0; got "
                          f"width={width}, depth={depth}, batch={batch}, scale={scale}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        f = Linearizer(width, depth=depth, dtype=torch.float64)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
        x1, x2 = (torch.randn(batch, width, generator=gen, dtype=torch.float64) for _ in range(2))
        a1, a2 = (torch.randn(batch, 1, generator=gen, dtype=torch.float64) for _ in range(2))
        gx, gy = f.g_x, f.g_y
        lhs = f(induced_add(gx, induced_scale(gx, a1, x1), induced_scale(gx, a2, x2)))
        rhs = induced_add(gy, induced_scale(gy, a1, f(x1)), induced_scale(gy, a2, f(x2)))
        euclid = _rel(f(a1 * x1 + a2 * x2), a1 * f(x1) + a2 * f(x2))
        z = torch.randn(batch, width, generator=gen, dtype=torch.float64)
        inverse = max(_rel(g(g.inverse(z)), z) for g in (gx, gy))
    return {"error": _rel(lhs, rhs), "euclidean_error": euclid, "inverse_error": inverse}
