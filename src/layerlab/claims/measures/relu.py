"""Stepped sigmoid units sum to softplus, the smooth form of the rectified linear unit.

Paper: Nair & Hinton, "Rectified Linear Units Improve Restricted Boltzmann Machines", ICML 2010
(no arXiv id; Sec. 2, "Rectified linear units").

A binary unit replaced by ``N`` copies with the same weights and biases offset by ``-0.5, -1.5,
-2.5, ...`` ("stepped sigmoid units") has the expected total activation::

    sum_{i=1}^{N} sigma(x - i + 0.5)  ~=  log(1 + e^x)          (N -> infinity)

which the paper then approximates by the (noisy) rectified linear unit ``max(0, x + noise)``.

The sum is the midpoint rule for ``int_0^inf sigma(x - t) dt = log(1 + e^x)``; its error is about
``sigma'(x) / 24 <= 1/96`` (the midpoint rule's ``h^2/24`` times the integral of the second
derivative). The measurement evaluates the sum (``n_units`` copies) and softplus at ``n_points``
inputs drawn uniformly from ``[-x_max, x_max]`` (float64) and returns ``error``, the max absolute
difference; ``relu_gap`` is the max ``|softplus(x) - relu(x)|`` at the same points with layerlab's
``relu`` (``log 2`` at 0: the rectifier is the large-|x| limit).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...blocks.activations import ReLU
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


def stepped_sigmoid(x: torch.Tensor, n_units: int) -> torch.Tensor:
    """``sum_{i=1}^{n_units} sigma(x - i + 0.5)``, elementwise."""
    offsets = torch.arange(1, n_units + 1, dtype=x.dtype) - 0.5
    return torch.sigmoid(x.unsqueeze(-1) - offsets).sum(-1)


@register_measure("stepped_sigmoid_softplus", metric="error",
                  paper=Paper("Rectified Linear Units Improve Restricted Boltzmann Machines", 2010, None))
def stepped_sigmoid_softplus(seed: int, *, n_units: int = 200, x_max: float = 10.0,
                             n_points: int = 4096) -> dict[str, float]:
    if n_units < 1 or not x_max > 0 or n_points < 1:
        raise ConfigError(f"stepped_sigmoid_softplus: need n_units >= 1, x_max > 0, n_points >= 1; "
                          f"got n_units={n_units}, x_max={x_max}, n_points={n_points}")
    if n_units < x_max + 40:
        raise ConfigError(f"stepped_sigmoid_softplus: n_units={n_units} truncates the sum at inputs up to "
                          f"x_max={x_max}; use n_units >= x_max + 40 (e.g. {math.ceil(x_max) + 40})")
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.rand(n_points, generator=g, dtype=torch.float64) - 1) * x_max
    softplus = F.softplus(x)
    err = (stepped_sigmoid(x, n_units) - softplus).abs()
    return {"error": err.max().item(), "mean_error": err.mean().item(),
            "relu_gap": (softplus - ReLU()(x)).abs().max().item()}
