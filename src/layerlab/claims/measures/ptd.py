"""Perturb-then-diagonalise: the diagonal system's transfer function converges uniformly to HiPPO-LegS's.

Paper: Yu et al., "Robustifying State-space Models for Long Sequences via Approximate
Diagonalization", 2023, arXiv:2310.01698: diagonalising ``A_H + E = V~ Lambda~ V~^{-1}`` with
``||E||_2 = eps`` gives the diagonal SSM ``(Lambda~, V~^{-1} B, C V~)`` whose transfer function
``G_PTD(s) = sum_n (C V~)_n (V~^{-1} B)_n / (s - Lambda~_n)`` converges uniformly on the imaginary
axis to ``G_H(s) = C (sI - A_H)^{-1} B`` as ``eps -> 0`` (strong convergence).

Per seed: HiPPO-LegS of size ``N`` (closed form), a readout ``C ~ N(0, I)`` and a perturbation drawn
from a ``torch.Generator``; on ``s = i omega``, omega in {0} and ``points`` log-spaced values in
``[1e-2, 1e4]``::

    error = sup_omega |G_PTD(i omega) - G_H(i omega)| / sup_omega |G_H(i omega)|

also reported: ``error_ratio`` (the same error at ``eps / 100`` divided by this one: ~1/100 when the
convergence is O(eps)), ``kappa_ptd`` (cond of V~) and ``log10_kappa_exact`` (of A_H's own
eigenvectors).
"""
from __future__ import annotations

import math

import torch

from ...blocks.mixers.hippo import PTD_PAPER, diagonal_transfer, hippo_legs, ptd, transfer
from ...errors import ConfigError
from . import register_measure


def _sup_error(A, B, C, s, eps, g) -> tuple[float, float]:
    lam, V, _ = ptd(A, eps, generator=g)
    b, c = torch.linalg.solve(V, B.to(V.dtype)), C.to(V.dtype) @ V
    return (diagonal_transfer(lam, b, c, s) - transfer(A, B, C, s)).abs().max().item(), torch.linalg.cond(V).item()


@register_measure("ptd_transfer_uniform_error", metric="error", paper=PTD_PAPER)
def ptd_transfer_uniform_error(seed: int, *, N: int = 64, eps: float = 1e-3, points: int = 800) -> dict[str, float]:
    if int(N) < 2 or int(points) < 1 or not eps > 0:
        raise ConfigError(f"ptd_transfer_uniform_error: need N >= 2, points >= 1, eps > 0; got N={N}, "
                          f"points={points}, eps={eps}")
    g = torch.Generator().manual_seed(seed)
    A, B = hippo_legs(int(N))
    C = torch.randn(int(N), dtype=torch.float64, generator=g)
    omega = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-2, 4, int(points), dtype=torch.float64)])
    s = 1j * omega.to(torch.complex128)
    G_H = transfer(A, B, C, s).abs().max().item()
    err, kappa = _sup_error(A, B, C, s, eps, g)
    err_small, _ = _sup_error(A, B, C, s, eps / 100, g)
    _, V0 = torch.linalg.eig(A)
    return {"error": err / G_H, "error_ratio": err_small / err, "kappa_ptd": kappa,
            "log10_kappa_exact": math.log10(torch.linalg.cond(V0).item())}
