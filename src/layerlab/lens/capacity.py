r"""Memory capacity of recurrent networks driven by i.i.d. input.

Papers:
    - Jaeger, "Short term memory in echo state networks", GMD Report 152, 2002: the memory
      capacity of a state sequence ``x_t`` driven by a scalar input ``z_t`` is the sum over delays
      of the squared correlation between ``z_{t-τ}`` and its best linear readout from ``x_t``.
    - Ballarin, Grigoryeva & Ortega, "Memory Capacity of Nonlinear Recurrent Networks: Is it
      Informative?", GSI 2025, arXiv:2502.04832: for i.i.d. input of variance ``σ²``

          MC_τ = Cov(z_{t-τ}, x_t) Γ_x^{-1} Cov(x_t, z_{t-τ}) / σ²,    MC = Σ_{τ>=0} MC_τ,

      with ``Γ_x = Var(x_t)``; for the linear network ``x_t = A x_{t-1} + C z_t`` (``ρ(A) < 1``)
      MC equals the rank of the Kalman controllability matrix ``[C, AC, ..., A^{N-1} C]``
      (Gonon, Grigoryeva & Ortega 2020, arXiv:2004.11234), ``N`` almost surely for random
      ``(A, C)``; and for the echo state network ``x_t = σ(A x_{t-1} + C z_t + ζ)`` MC takes any
      value between its bounds depending only on the scale of the input.

Forms:
    - ``linear_memory_capacity`` (closed form): ``Γ_x`` from the Lyapunov equation
      ``Γ = A Γ A^T + σ² C C^T`` (its series), ``Cov(x_t, z_{t-τ}) = σ² A^τ C``, so
      ``MC_τ = σ² C^T (A^τ)^T Γ^{-1} A^τ C``, summed over ``τ < max_delay``.
    - ``memory_capacity`` (empirical): the sample version on a simulated state sequence, i.e. the
      ``R²`` of the least-squares readout of ``z_{t-τ}`` from ``x_t`` with an intercept.
    - ``esn_states``: simulate ``x_t = σ(A x_{t-1} + C z_t + ζ)`` from ``x_0 = 0`` (``σ`` the
      identity for a linear network) and drop a washout.
All in float64.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError


def controllability_rank(A: Tensor, C: Tensor, tol: float | None = None) -> int:
    """``rank [C, AC, ..., A^{N-1} C]`` (numerical rank, SVD with `tol` or LAPACK's default)."""
    A, C = A.double(), C.double().reshape(A.shape[0], -1)
    blocks, v = [], C
    for _ in range(A.shape[0]):
        blocks.append(v)
        v = A @ v
    return int(torch.linalg.matrix_rank(torch.cat(blocks, 1), atol=tol))


def _check(A: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    if A.dim() != 2 or A.shape[0] != A.shape[1] or C.reshape(-1).shape[0] != A.shape[0]:
        raise ShapeError(f"A must be (N, N) and C hold N entries, got {tuple(A.shape)} and {tuple(C.shape)}")
    return A.double(), C.double().reshape(-1, 1)


def linear_memory_capacity(A: Tensor, C: Tensor, max_delay: int = 1000, tol: float = 1e-12) -> Tensor:
    """``MC_τ`` for ``τ = 0 .. max_delay - 1`` of ``x_t = A x_{t-1} + C z_t`` (closed form; the
    sum is the total MC). ``ρ(A) < 1`` is required (a stationary state). ``Γ`` is inverted on its
    range (eigenvalues above ``tol`` times the largest): a rank-deficient pair gives MC = rank."""
    A, C = _check(A, C)
    rho = float(torch.linalg.eigvals(A).abs().max())
    if not rho < 1:
        raise ConfigError(f"linear_memory_capacity needs spectral radius < 1 (a stationary state), got {rho:.4g}")
    # Γ = Σ_j A^j C C^T (A^j)^T, by doubling: Γ_{2k} = Γ_k + A^k Γ_k (A^k)^T
    gamma, power = C @ C.T, A.clone()
    for _ in range(64):
        nxt = gamma + power @ gamma @ power.T
        power = power @ power
        if torch.equal(nxt, gamma) or float(power.abs().max()) < 1e-300:
            gamma = nxt
            break
        gamma = nxt
    evals, evecs = torch.linalg.eigh(gamma)
    keep = evals > tol * evals.max()
    inv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    out, v = [], C
    for _ in range(max_delay):
        out.append((v.T @ inv @ v).reshape(()))
        v = A @ v
    return torch.stack(out)


def esn_states(A: Tensor, C: Tensor, z: Tensor, *, bias: Tensor | None = None,
               activation: Callable[[Tensor], Tensor] | None = torch.tanh, washout: int = 100) -> Tensor:
    """States ``(T - washout, N)`` of ``x_t = σ(A x_{t-1} + C z_t + ζ)`` from ``x_0 = 0``;
    ``activation=None`` is the linear network."""
    A, C = _check(A, C)
    z = z.double().reshape(-1)
    if not 0 <= washout < z.shape[0]:
        raise ConfigError(f"washout must be in [0, {z.shape[0]}), got {washout}")
    zeta = torch.zeros(A.shape[0], dtype=torch.float64) if bias is None else bias.double().reshape(-1)
    drive = z[:, None] * C[:, 0] + zeta  # (T, N)
    x, out = torch.zeros(A.shape[0], dtype=torch.float64), torch.empty(z.shape[0], A.shape[0], dtype=torch.float64)
    At = A.T.contiguous()
    for t in range(z.shape[0]):
        x = x @ At + drive[t]
        if activation is not None:
            x = activation(x)
        out[t] = x
    return out[washout:]


def memory_capacity(states: Tensor, z: Tensor, max_delay: int = 100, tol: float = 1e-10) -> Tensor:
    """Empirical ``MC_τ``, ``τ = 0 .. max_delay - 1``: the ``R²`` of the least-squares readout
    (with intercept) of ``z_{t-τ}`` from ``x_t``. ``states`` ``(T, N)`` and ``z`` ``(T,)`` are
    aligned (``states[t]`` has seen ``z[t]``); the sums run over ``t >= max_delay - 1``."""
    X, z = states.double(), z.double().reshape(-1)
    if X.dim() != 2 or X.shape[0] != z.shape[0]:
        raise ShapeError(f"states must be (T, N) with T = len(z) = {z.shape[0]}, got {tuple(X.shape)}")
    if not 1 <= max_delay < X.shape[0] // 2:
        raise ConfigError(f"max_delay must be in [1, T/2) = [1, {X.shape[0] // 2}), got {max_delay}")
    D = max_delay - 1
    Xc = X[D:] - X[D:].mean(0)
    evals, evecs = torch.linalg.eigh(Xc.T @ Xc)
    keep = evals > tol * evals.max()
    basis = Xc @ (evecs[:, keep] / evals[keep].sqrt())  # orthonormal columns spanning the centred states
    out = []
    for tau in range(max_delay):
        y = z[D - tau: z.shape[0] - tau]
        y = y - y.mean()
        proj = basis.T @ y
        out.append(proj.square().sum() / y.square().sum())
    return torch.stack(out)
