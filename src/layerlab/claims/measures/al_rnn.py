"""AL-RNN: the map is affine inside each of at most 2^P subregions, and its fixed points are closed-form.

Paper: Brenner, Hemmer, Monfared & Durstewitz, "Almost-Linear RNNs Yield Highly Interpretable
Symbolic Codes in Dynamical Systems Reconstruction", 2024, arXiv:2410.14240. With
``z_t = A z_{t-1} + W Φ*(z_{t-1}) + h`` and ReLUs on ``P`` of the ``M`` units, the state space splits
into at most ``2^P`` linear subregions ``Ω``, in each of which ``z_t = (A + W D_Ω) z_{t-1} + h``;
fixed points are ``z* = (I - A - W D_Ω)^{-1} h`` for the ``Ω`` that are self-consistent.

Per seed: an ``ALRNN(M, P)`` in float64 with ``W`` N(0, w_scale² / M) and ``h`` N(0, 1) (seeded
``torch.Generator``); ``n_states`` random states. Returned::

    error = max( max_n |F(z_n) - ((A + W D_Ω(z_n)) z_n + h)| / max|F(z)|,   (affine per subregion)
                 max_{z*} |F(z*) - z*| / max(1, |z*|) )                       (closed-form fixed points)

and ``regions`` (the distinct patterns visited by the states and a 200-step rollout),
``excess_regions = max(0, regions - 2^P)``, ``fixed_points`` (their number).
"""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ...models.al_rnn import ALRNN
from ...registry import Paper
from . import register_measure


@register_measure("al_rnn_piecewise_linear", metric="error",
                  paper=Paper("Almost-Linear RNNs Yield Highly Interpretable Symbolic Codes in Dynamical Systems "
                              "Reconstruction", 2024, "2410.14240"))
def al_rnn_piecewise_linear(seed: int, *, M: int = 8, P: int = 3, w_scale: float = 1.0,
                            n_states: int = 2048) -> dict[str, float]:
    if n_states < 1 or not w_scale > 0:
        raise ConfigError(f"al_rnn_piecewise_linear: need n_states >= 1 and w_scale > 0, got {n_states}, {w_scale}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        m = ALRNN(M, P, dtype=torch.float64)
    with torch.no_grad():
        m.a.uniform_(0.5, 0.9, generator=g)
        m.W.normal_(0.0, w_scale / M**0.5, generator=g)
        m.h.normal_(0.0, 1.0, generator=g)
        z = 3 * torch.randn(n_states, M, generator=g, dtype=torch.float64)
        fz, omegas = m.step(z), m.region(z)
        affine = torch.stack([m.region_matrix(o) @ zi for o, zi in zip(omegas, z)]) + m.h
        err = ((fz - affine).abs().max() / fz.abs().max()).item()
        roll = m(z[:64], 200)
        visited = {tuple(o.tolist()) for o in torch.cat([omegas, m.region(roll).flatten(0, 1)])}
        fps = m.fixed_points()
        for _, zs in fps:
            err = max(err, ((m.step(zs) - zs).abs().max() / max(1.0, zs.abs().max().item())).item())
    return {"error": err, "regions": float(len(visited)), "excess_regions": float(max(0, len(visited) - 2**P)),
            "fixed_points": float(len(fps))}
