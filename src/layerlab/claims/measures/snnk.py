"""SNNK's random-feature estimate: its mean squared error falls as 1/m in the number of features.

Paper: Sehanobish, Choromanski, Zhao, Dubey & Likhosherstov, "Scalable Neural Network Kernels",
2023 (ICLR 2024), arXiv:2310.13225: a feed-forward layer ``f(w^T x)`` is computed as
``phi(x)^T psi(w)`` with random features ``ω_1..ω_m ~ N(0, I_d)``, an unbiased estimate
(``E_ω[phi(x)^T psi(w)] = f(w^T x)``). Being a mean of m i.i.d. terms, its mean squared error is
``σ^2(x, w) / m``; for the positive random features of ``f = exp``::

    phi(x) = exp(Ω x - |x|^2/2) / sqrt(m),  psi(w) = exp(Ω w - |w|^2/2) / sqrt(m),
    σ^2(x, w) = exp(2 w^T x) (exp(|x + w|^2) - 1).

Per seed the measurement draws N inputs and H weight rows at norm ``scale`` and, for every m in
``ms``, ``reps`` independent draws of Ω; it averages the squared error of ``phi(x)^T psi(w)`` against
the exact ``f(w^T x)`` over all pairs and draws, fits the least-squares slope of log MSE against
log m, and returns ``error = |slope + 1|`` (the claim: slope -1). For ``exp`` it also returns
``variance_ratio``: the measured MSE times m over the closed-form ``σ^2`` (mean over pairs and m;
1 in expectation). ``activation`` may be ``exp``, ``sin``, ``cos`` (the layer's maps,
``layerlab.blocks.channels.snnk``; the bias is 0).
"""
from __future__ import annotations

import math

import torch

from ...blocks.channels.snnk import exact, phi, psi
from ...errors import ConfigError
from ...registry import Paper
from . import register_measure

ACTIVATIONS = ("exp", "sin", "cos")


def _on_sphere(n: int, d: int, scale: float, g: torch.Generator) -> torch.Tensor:
    v = torch.randn(n, d, generator=g, dtype=torch.float64)
    return scale * v / v.norm(dim=-1, keepdim=True)


def exp_variance(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Closed-form variance of one positive-random-feature term for ``exp(w^T x)``, (N, H)."""
    xw = x @ w.T
    sq = (x * x).sum(-1, keepdim=True) + (w * w).sum(-1) + 2 * xw  # |x + w|^2
    return torch.exp(2 * xw) * torch.expm1(sq)


def loglog_slope(xs: list[int] | list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx = torch.tensor([math.log(v) for v in xs], dtype=torch.float64)
    ly = torch.tensor([math.log(v) for v in ys], dtype=torch.float64)
    return (((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()).item()


@register_measure("snnk_mse_scaling", metric="error",
                  paper=Paper("Scalable Neural Network Kernels", 2023, "2310.13225"))
def snnk_mse_scaling(seed: int, *, activation: str = "exp", d: int = 16, n_inputs: int = 32, n_weights: int = 16,
                     scale: float = 0.5, ms: tuple[int, ...] | list[int] = (16, 64, 256, 1024, 4096),
                     reps: int = 8) -> dict[str, float]:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"snnk_mse_scaling: activation must be one of {ACTIVATIONS}, got {activation!r}")
    ms = [int(m) for m in ms]
    if len(ms) < 2 or len(set(ms)) != len(ms) or min(ms) < 1:
        raise ConfigError(f"snnk_mse_scaling: ms needs at least two distinct feature counts >= 1, got {ms}")
    if d < 1 or n_inputs < 1 or n_weights < 1 or reps < 1 or not scale > 0:
        raise ConfigError(f"snnk_mse_scaling: need d, n_inputs, n_weights, reps >= 1 and scale > 0; got d={d}, "
                          f"n_inputs={n_inputs}, n_weights={n_weights}, reps={reps}, scale={scale}")
    g = torch.Generator().manual_seed(seed)
    x = _on_sphere(n_inputs, d, scale, g)
    w = _on_sphere(n_weights, d, scale, g)
    target = exact(x, w, None, activation)
    mses = []
    for m in ms:
        sq = 0.0
        for _ in range(reps):
            omega = torch.randn(m, d, generator=g, dtype=torch.float64)
            est = phi(x, omega, activation) @ psi(w, None, omega, activation).T
            sq += (est - target).pow(2).mean().item()
        mses.append(sq / reps)
    slope = loglog_slope(ms, mses)
    out = {"error": abs(slope + 1.0), "slope": slope, "mse_first": mses[0], "mse_last": mses[-1]}
    if activation == "exp":
        var = exp_variance(x, w).mean().item()
        out["variance_ratio"] = sum(v * m for v, m in zip(mses, ms)) / len(ms) / var
    return out
