"""The SiLU is not monotonic: its global minimum is about -0.28 at z ~= -1.28.

Paper: Elfwing, Uchibe & Doya, "Sigmoid-Weighted Linear Units for Neural Network Function
Approximation in Reinforcement Learning", 2017, arXiv:1702.03118 (Sec. 2.2, Eq. 4 and Fig. 1).

``a(z) = z sigma(z)``. Its derivative ``sigma(z) (1 + z (1 - sigma(z)))`` vanishes once, where
``1 + z (1 - sigma(z)) = 0``; the paper: "it has a global minimum value of approximately -0.28
for z ~= -1.28" (the "soft floor" behind its self-stabilizing property).

The measurement locates the minimum of layerlab's ``silu`` block numerically (float64): a grid of
``n_grid`` points on ``[-z_range, z_range]`` (offset drawn from the seed), then golden-section
search on the bracket around the best grid point. ``error`` is the larger of ``|z_min - (-1.28)|``
and ``|a(z_min) - (-0.28)|``, the distance to the paper's two-decimal values.
"""
from __future__ import annotations

import math

import torch

from ...blocks.activations import SiLU
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure

PAPER_Z, PAPER_MIN = -1.28, -0.28


def golden_minimum(f, lo: float, hi: float, tol: float = 1e-12) -> float:  # type: ignore[no-untyped-def]
    """The minimizer of a unimodal ``f`` on ``[lo, hi]`` by golden-section search."""
    r = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    return (a + b) / 2


@register_measure("silu_minimum", metric="error",
                  paper=Paper("Sigmoid-Weighted Linear Units for Neural Network Function Approximation in "
                              "Reinforcement Learning", 2017, "1702.03118"))
def silu_minimum(seed: int, *, z_range: float = 8.0, n_grid: int = 4001) -> dict[str, float]:
    if not z_range > 2 or n_grid < 3:
        raise ConfigError(f"silu_minimum: need z_range > 2 (the minimum lies near -1.28) and n_grid >= 3; "
                          f"got z_range={z_range}, n_grid={n_grid}")
    g = torch.Generator().manual_seed(seed)
    act = SiLU()
    step = 2 * z_range / (n_grid - 1)
    z = torch.linspace(-z_range, z_range, n_grid, dtype=torch.float64) + step * float(torch.rand(1, generator=g))
    i = int(act(z).argmin())
    lo, hi = float(z[max(i - 1, 0)]), float(z[min(i + 1, n_grid - 1)])
    f = lambda t: float(act(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    z_min = golden_minimum(f, lo, hi)
    a_min = f(z_min)
    return {"error": max(abs(z_min - PAPER_Z), abs(a_min - PAPER_MIN)), "z_min": z_min, "a_min": a_min}
