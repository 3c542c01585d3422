r"""A linear RNN trained from small recurrent weights: its outlier eigenvalue against the reduced system.

Paper: Bordelon, Cotler, Pehlevan & Zavatone-Veth, "Dynamically Learning to Integrate in Recurrent
Neural Networks", 2025, arXiv:2503.18754 (abstract: from small initial recurrent weights, learning
is described by a low-dimensional system tracking a single outlier eigenvalue of ``W``).

The measurement draws ``W(0) = sigma J / sqrt(N)`` (``J`` standard Gaussian), ``u, v ~ N(0, I/N)``,
and runs gradient descent on the expected loss of learning the leaky integrator
``y*_t = sum_s gamma^{t-s} x_s`` over sequences of length ``T`` (``lens.theory.learning_to_integrate``;
discrete time). Beside it, the reduced network: the same gradient descent on ``(M, a, b) =
(Q^T W(0) Q, Q^T u, Q^T v)`` in the plane ``Q`` of ``u`` and ``v`` (exact when ``W(0) = 0``).
Every ``record_every`` steps it reads the eigenvalue of ``W`` of largest real part (the outlier once
it has left the bulk) and that of the reduced ``M``.

``error`` = max over the recorded steps of ``|Re lambda_full - Re lambda_reduced|``. Beside it:
``outlier_final`` (target ``gamma``), ``outlier_imag_max`` (is the outlier real), ``bulk_ratio``
(largest modulus among the other eigenvalues at the end over that at the start: the bulk stays put),
``loss_final`` / ``loss_initial``, and the steps at which the full and the reduced outlier first
pass ``gamma / 2``.
"""
from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...lens.theory import learning_to_integrate as li
from ...registry import Paper
from . import register_measure


def _top_real(w: torch.Tensor) -> complex:
    ev = torch.linalg.eigvals(w)
    return complex(ev[torch.argmax(ev.real)])


def _crossing(steps: list[int], values: list[float], level: float) -> float:
    return float(next((s for s, x in zip(steps, values) if x >= level), math.nan))


@register_measure("rnn_integrator_outlier", metric="error",
                  paper=Paper("Dynamically Learning to Integrate in Recurrent Neural Networks", 2025, "2503.18754"))
def rnn_integrator_outlier(seed: int, *, n: int = 64, sigma: float = 0.05, t: int = 60, gamma: float = 0.9,
                           lr: float = 0.003, steps: int = 1000, record_every: int = 10) -> dict[str, float]:
    if n < 3 or not sigma >= 0 or steps < 1 or record_every < 1:
        raise ConfigError(f"rnn_integrator_outlier: need n >= 3, sigma >= 0, steps >= 1, record_every >= 1; got "
                          f"n={n}, sigma={sigma}, steps={steps}, record_every={record_every}")
    g = torch.Generator().manual_seed(seed)
    w0 = sigma * torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    u0 = torch.randn(n, generator=g, dtype=torch.float64) / math.sqrt(n)
    v0 = torch.randn(n, generator=g, dtype=torch.float64) / math.sqrt(n)
    m0, a0, b0, _ = li.reduce(w0, u0, v0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 64 x 64 matrices: one thread is faster on a shared machine; restored below
    try:
        traj = {}
        for name, (w, u, v) in (("full", (w0, u0, v0)), ("reduced", (m0, a0, b0))):
            params, top, losses = (w, u, v), [], []
            for k in range(0, steps, record_every):
                top.append(_top_real(params[0]))
                out = li.gradient_descent(*params, t=t, gamma=gamma, lr=lr, steps=min(record_every, steps - k))
                params = (out["w"], out["u"], out["v"])
                losses.append(float(li.population_loss(*params, t, gamma)))
            top.append(_top_real(params[0]))
            traj[name] = (top, params, losses)
    finally:
        torch.set_num_threads(threads)
    full, red = traj["full"][0], traj["reduced"][0]
    rec_steps = list(range(0, steps, record_every)) + [steps]
    gap = max(abs(f.real - r.real) for f, r in zip(full, red))
    _, bulk0 = li.outlier_and_bulk(w0)
    _, bulk1 = li.outlier_and_bulk(traj["full"][1][0])
    loss0 = float(li.population_loss(w0, u0, v0, t, gamma))
    return {"error": gap, "outlier_final": full[-1].real, "reduced_final": red[-1].real,
            "outlier_imag_max": max(abs(f.imag) for f in full[len(full) // 2:]),
            "bulk_ratio": bulk1 / bulk0 if bulk0 > 0 else math.nan, "bulk_final": bulk1,
            "loss_ratio": traj["full"][2][-1] / loss0, "reduced_loss_ratio": traj["reduced"][2][-1] / loss0,
            "half_step_full": _crossing(rec_steps, [f.real for f in full], gamma / 2),
            "half_step_reduced": _crossing(rec_steps, [r.real for r in red], gamma / 2)}
