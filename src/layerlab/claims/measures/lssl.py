"""LSSL: the recurrent and the convolutional views compute the same map.

Paper: Gu et al., "Combining Recurrent, Convolutional, and Continuous-time Models with Linear
State-Space Layers", 2021, arXiv:2110.13985: the discretised system ``x_k = Abar x_{k-1} + Bbar u_k,
y_k = C x_k + D u_k`` (bilinear rule) "can be computed" as a recurrence or as the convolution
``y = K * u + D u`` with the Krylov kernel ``K = (C Bbar, C Abar Bbar, ..., C Abar^{L-1} Bbar)``.

Per seed: an ``LSSL`` (HiPPO-LegS init, ``mixing="none"``) drawn from a ``torch.Generator``, a random
input of length ``length``; float64::

    error = ||y_krylov - y_recurrent|| / ||y_recurrent||
"""
from __future__ import annotations

import torch

from ...blocks.mixers.lssl import LSSL
from ...errors import ConfigError
from ...registry import get
from . import register_measure


@register_measure("lssl_views_agree", metric="error", paper=get("mixer", "lssl").paper)
def lssl_views_agree(seed: int, *, d_model: int = 8, d_state: int = 32, length: int = 256) -> dict[str, float]:
    if int(d_model) < 1 or int(d_state) < 1 or int(length) < 1:
        raise ConfigError(f"lssl_views_agree: d_model, d_state and length must be >= 1; got {d_model}, "
                          f"{d_state}, {length}")
    g = torch.Generator().manual_seed(seed)
    block = LSSL(int(d_model), d_state=int(d_state), mixing="none", dtype=torch.float64, generator=g)
    u = torch.randn(1, int(length), int(d_model), dtype=torch.float64, generator=g)
    with torch.no_grad():
        fast, ref = block(u, "krylov"), block(u, "reference")
    return {"error": ((fast - ref).norm() / ref.norm()).item(), "output_norm": ref.norm().item()}
