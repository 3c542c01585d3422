r"""Activation regions against linear pieces of small ReLU networks, counted exactly on segments.

Paper: Stargalla, Hertrich & Reichman, "The Computational Complexity of Counting Linear Regions in
ReLU Neural Networks", 2025, arXiv:2505.16716 (abstract; Sec. 2): "There exist many different,
non-equivalent definitions of what a linear region actually is". Two of them: an *activation
region* is a maximal connected set of inputs with one activation pattern; a *linear piece* is a
maximal connected set on which the function ``f`` is affine. Every linear piece is a union of
activation regions, so #pieces <= #regions, with equality for one hidden layer with nonzero output
weights (every unit's switch bends ``f``); they differ where a unit switches while everything it
feeds is off.

The measurement draws ``n_nets`` ReLU MLPs ``2 -> width -> ... -> width -> 1`` (``depth`` hidden
layers; weights ``N(0, 2/fan_in)``, biases ``N(0, bias_std^2)``: He initialization with random
biases), and for each ``n_segments`` chords of the square ``[-1, 1]^2`` (two uniform points on its
boundary); on each chord it counts exactly (``lens.regions.mlp_line_regions``, float64) the
activation regions ``R`` and the linear pieces ``P`` (adjacent regions whose slopes ``df/dt``
agree to ``rtol = 1e-9`` merge). It reports ``differ``, the fraction of networks where the total
counts differ (``sum R != sum P``), ``error = 1 - differ`` (the share where they agree), the same fraction for one hidden layer of
the same total width (``differ_shallow``, 0 in exact arithmetic), and ``gap = (sum R - sum P) /
sum R`` over all networks.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import regions
from ...registry import Paper
from . import register_measure


def relu_mlp(sizes: list[int], bias_std: float, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights ``N(0, 2/fan_in)`` and biases ``N(0, bias_std^2)`` of an MLP with layer sizes `sizes`."""
    ws = [torch.randn(n, m, generator=gen, dtype=torch.float64) * (2.0 / m) ** 0.5 for m, n in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(n, generator=gen, dtype=torch.float64) * bias_std for n in sizes[1:]]
    return ws, bs


def boundary_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` uniform points on the boundary of ``[-1, 1]^2``."""
    side = torch.randint(4, (n,), generator=gen)
    u = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
    fixed = torch.where(side % 2 == 0, -1.0, 1.0).double()
    return torch.where((side < 2)[:, None], torch.stack([fixed, u], 1), torch.stack([u, fixed], 1))


def region_gap(ws: list[torch.Tensor], bs: list[torch.Tensor], starts: torch.Tensor, ends: torch.Tensor) -> tuple[int, int]:
    """(total activation regions, total linear pieces) over the segments."""
    found = [regions.mlp_line_regions(ws, bs, a, b) for a, b in zip(starts, ends)]
    return sum(r.n_regions for r in found), sum(r.n_pieces(rtol=1e-9) for r in found)


@register_measure("region_definitions", metric="error",
                  paper=Paper("The Computational Complexity of Counting Linear Regions in ReLU Neural Networks",
                              2025, "2505.16716"))
def region_definitions(seed: int, *, width: int = 4, depth: int = 3, bias_std: float = 0.5,
                       n_nets: int = 16, n_segments: int = 16) -> dict[str, float]:
    if min(width, depth, n_nets, n_segments) < 1 or not bias_std >= 0:
        raise ConfigError(f"region_definitions: need width, depth, n_nets, n_segments >= 1 and bias_std >= 0; "
                          f"got {width}, {depth}, {n_nets}, {n_segments}, {bias_std}")
    gen = torch.Generator().manual_seed(seed)
    differ = differ_shallow = 0
    regions_deep = pieces_deep = regions_shallow = 0
    for _ in range(n_nets):
        starts, ends = boundary_points(n_segments, gen), boundary_points(n_segments, gen)
        r, p = region_gap(*relu_mlp([2] + [width] * depth + [1], bias_std, gen), starts, ends)
        r1, p1 = region_gap(*relu_mlp([2, width * depth, 1], bias_std, gen), starts, ends)
        differ += r != p
        differ_shallow += r1 != p1
        regions_deep, pieces_deep, regions_shallow = regions_deep + r, pieces_deep + p, regions_shallow + r1
    frac = differ / n_nets
    return {"error": 1.0 - frac, "differ": frac, "differ_shallow": differ_shallow / n_nets,
            "gap": (regions_deep - pieces_deep) / regions_deep, "regions": regions_deep / (n_nets * n_segments),
            "regions_shallow": regions_shallow / (n_nets * n_segments)}
