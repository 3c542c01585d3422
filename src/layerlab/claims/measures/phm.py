"""PHM's parameter count: about 1/n of the dense layer's, measured on the channel mixer.

Paper: Grassucci, Zhang & Comminiello, "PHNNs: Lightweight Neural Networks via Parameterized
Hypercomplex Convolutions", 2021, arXiv:2110.04176 (the PHM layer of Zhang et al., "Beyond
Fully-Connected Layers with Quaternions: Parameterization of Hypercomplex Multiplications with 1/n
Parameters", 2021, arXiv:2102.08597, Eq. 3.1-3.2): a weight ``H = sum_{i=1}^n A_i ⊗ S_i`` with
``A_i`` (n, n) and ``S_i`` (k/n, d/n) has ``n^3 + k d / n`` free parameters instead of ``k d``.

The measurement builds the PHM MLP (``phm``, two PHM layers with biases) and the dense GELU MLP
(``mlp``) at the same width ``d_model`` and hidden width and returns their parameter ratio and its
relative distance from exactly ``1/n``::

    ratio = (2 n^3 + 2 D h / n + h + D) / (2 D h + h + D),     error = |n * ratio - 1|

The width is drawn per seed (a multiple of n in ``[min_width, max_width]``) from a
``torch.Generator``, so the seeds sample the widths the arena uses; the biases and the ``n^3``
rule parameters are what keeps the ratio above 1/n.
"""
from __future__ import annotations

import torch

from ...blocks.channels.mlp import MLP
from ...blocks.channels.phm import PHMMLP
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@register_measure("phm_param_ratio", metric="error",
                  paper=Paper("PHNNs: Lightweight Neural Networks via Parameterized Hypercomplex Convolutions",
                              2021, "2110.04176"))
def phm_param_ratio(seed: int, *, n: int = 4, min_width: int = 64, max_width: int = 256,
                    expansion: float = 4.0) -> dict[str, float]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"phm_param_ratio: n must be an integer >= 1, got {n!r}")
    if not n <= min_width <= max_width:
        raise ConfigError(f"phm_param_ratio: need n <= min_width <= max_width, got n={n}, "
                          f"min_width={min_width}, max_width={max_width}")
    lo, hi = -(-min_width // n), max_width // n  # multiples of n inside the range
    if lo > hi:
        raise ConfigError(f"phm_param_ratio: no multiple of n = {n} in [{min_width}, {max_width}]; widen the range")
    g = torch.Generator().manual_seed(seed)
    d = n * int(torch.randint(lo, hi + 1, (1,), generator=g))
    with torch.device("meta"):  # counts only: no memory, no draw from any generator
        phm = PHMMLP(d, n=n, expansion=expansion)
        dense = MLP(d, hidden=phm.hidden)
    ratio = _count(phm) / _count(dense)
    return {"error": abs(n * ratio - 1.0), "ratio": ratio, "d_model": float(d), "hidden": float(phm.hidden),
            "params_phm": float(_count(phm)), "params_mlp": float(_count(dense))}
