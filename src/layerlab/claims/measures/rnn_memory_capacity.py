r"""The memory capacity of a random tanh echo state network as a function of the input scale alone.

Paper: Ballarin, Grigoryeva & Ortega, "Memory Capacity of Nonlinear Recurrent Networks: Is it
Informative?", GSI 2025, arXiv:2502.04832 (abstract): "the MC of random nonlinear RNNs yields
arbitrary values within established upper and lower bounds depending exclusively on the scale of
the input process". With i.i.d. input ``z_t`` of variance ``σ²`` the total memory capacity is
``MC = Σ_τ Cov(z_{t-τ}, x_t) Γ_x^{-1} Cov(x_t, z_{t-τ}) / σ²``, between 0 and ``N``
(``lens.capacity``).

The measurement draws one network ``x_t = tanh(A x_{t-1} + C z_t)`` (``N`` units, ``A`` Gaussian
rescaled to spectral radius ``rho``, ``C ~ N(0, I)``), one i.i.d. ``N(0, 1)`` input sequence of
length ``T``, and computes the empirical MC (delays ``0 .. max_delay - 1``) of the same network
driven by ``s z`` for each scale ``s`` in ``scales``. It reports ``mc_<s>`` per scale, the linear
network's closed form (``mc_linear``, = N almost surely), ``spread = (max_s MC - min_s MC) / N``
(the share of the range ``[0, N]`` the input scale alone sweeps) and ``error = 1 - spread``.
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...lens import capacity
from ...registry import Paper
from . import register_measure


@register_measure("esn_capacity_input_scale", metric="error",
                  paper=Paper("Memory Capacity of Nonlinear Recurrent Networks: Is it Informative?", 2025, "2502.04832"))
def esn_capacity_input_scale(seed: int, *, n: int = 20, rho: float = 0.9, length: int = 20_000,
                             max_delay: int = 100, scales: tuple[float, ...] | list[float] = (1e-3, 1e-1, 1.0, 10.0),
                             ) -> dict[str, float]:
    scales = [float(s) for s in scales]
    if n < 1 or not 0 < rho < 1 or len(scales) < 2 or min(scales) <= 0 or not 1 <= max_delay < length // 4:
        raise ConfigError(f"esn_capacity_input_scale: need n >= 1, 0 < rho < 1, two or more positive scales and "
                          f"1 <= max_delay < length / 4; got {n}, {rho}, {scales}, {max_delay}, {length}")
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=gen, dtype=torch.float64)
    A = rho * A / torch.linalg.eigvals(A).abs().max()
    C = torch.randn(n, generator=gen, dtype=torch.float64)
    z = torch.randn(length, generator=gen, dtype=torch.float64)
    washout = 100
    mc = {s: float(capacity.memory_capacity(capacity.esn_states(A, C, s * z, washout=washout), z[washout:],
                                            max_delay=max_delay).sum()) for s in scales}
    spread = (max(mc.values()) - min(mc.values())) / n
    return {"error": 1.0 - spread, "spread": spread, **{f"mc_{s:g}": v for s, v in mc.items()},
            "mc_linear": float(capacity.linear_memory_capacity(A, C, max_delay=max_delay).sum())}
