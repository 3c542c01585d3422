r"""HiPPO-LegS and its perturb-then-diagonalise (PTD) diagonalisation; transfer functions.

HiPPO-LegS (Gu, Dao, Ermon, Rudra, Ré, "HiPPO: Recurrent Memory with Optimal Polynomial
Projections", 2020, arXiv:2008.07669), used time-invariantly as the state matrix of LSSL and S4::

    A_nk = -(2n+1)^{1/2} (2k+1)^{1/2}   if n > k
    A_nk = -(n+1)                        if n = k          B_n = (2n+1)^{1/2},   n, k = 0 .. N-1
    A_nk = 0                             if n < k

``A`` is lower triangular with eigenvalues ``-1 .. -N`` but highly non-normal: its eigenvector
matrix has a condition number growing exponentially in ``N`` (~1e19 at N = 32), so diagonalising
it exactly is numerically meaningless.

Perturb-then-diagonalise (Yu et al., "Robustifying State-space Models
for Long Sequences via Approximate Diagonalization", 2023, arXiv:2310.01698): diagonalise a
perturbed matrix instead, ``A + E = V~ Lambda~ V~^{-1}`` with ``||E||_2 = eps`` small, and use
``(Lambda~, V~^{-1} B, C V~)`` as the diagonal SSM. The diagonalisation is *backward* stable: it
is exact for a matrix within ``eps`` of ``A``, so the transfer function
``G(s) = C (sI - A)^{-1} B`` of the diagonal system converges to HiPPO's uniformly on the
imaginary axis as ``eps -> 0`` (``G~ - G = C (sI - A - E)^{-1} E (sI - A)^{-1} B``), while
``V~`` stays far better conditioned than ``A``'s own eigenvectors.

Deviation: the paper chooses ``E`` by minimising ``kappa(V~) + gamma ||E||``; :func:`ptd` draws
``tries`` random Gaussian directions scaled to ``||E||_2 = eps`` and keeps the one with the
smallest ``kappa(V~)`` (a random search over that objective at fixed ``||E||``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError
from ...registry import Paper

PTD_PAPER = Paper("Robustifying State-space Models for Long Sequences via Approximate Diagonalization", 2023,
                  "2310.01698")


def hippo_legs(N: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """``(A, B)``: the HiPPO-LegS state matrix (N, N) and input vector (N,) in closed form."""
    if int(N) < 1:
        raise ConfigError(f"hippo_legs: N must be >= 1, got {N}")
    n = torch.arange(int(N), dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)
    A = -torch.tril(torch.outer(r, r), diagonal=-1) - torch.diag(n + 1)
    return A.to(dtype), r.to(dtype)


def ptd(A: Tensor, eps: float, *, generator: torch.Generator | None = None,
        tries: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Perturb-then-diagonalise ``A`` (real, N x N): ``(Lambda~ (N,), V~ (N, N), E (N, N))`` with
    ``A + E = V~ diag(Lambda~) V~^{-1}``, ``E`` real Gaussian scaled to ``||E||_2 = eps``; of
    ``tries`` draws the one with the best-conditioned ``V~`` is kept. Float64 throughout."""
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ConfigError(f"ptd: A must be a square matrix, got shape {tuple(A.shape)}")
    if not eps > 0:
        raise ConfigError(f"ptd: the perturbation size eps must be > 0 (eps = 0 is the ill-conditioned exact "
                          f"diagonalisation), got {eps}")
    if int(tries) < 1:
        raise ConfigError(f"ptd: tries must be >= 1, got {tries}")
    A = A.to(torch.float64)
    best = None
    for _ in range(int(tries)):
        E = torch.randn(A.shape, dtype=torch.float64, generator=generator)
        E = E * (eps / torch.linalg.matrix_norm(E, ord=2))
        lam, V = torch.linalg.eig(A + E)
        kappa = torch.linalg.cond(V).item()
        if best is None or kappa < best[0]:
            best = (kappa, lam, V, E)
    return best[1], best[2], best[3]


def transfer(A: Tensor, B: Tensor, C: Tensor, s: Tensor) -> Tensor:
    """``G(s) = C (sI - A)^{-1} B`` of a dense SSM at each point of ``s`` (complex, (S,)) -> (S,)."""
    N = A.shape[0]
    I = torch.eye(N, dtype=torch.complex128)
    M = s.to(torch.complex128)[:, None, None] * I - A.to(torch.complex128)
    x = torch.linalg.solve(M, B.to(torch.complex128).expand(len(s), N))
    return x @ C.to(torch.complex128)


def diagonal_transfer(lam: Tensor, b: Tensor, c: Tensor, s: Tensor) -> Tensor:
    """``G(s) = sum_n c_n b_n / (s - lambda_n)`` of a diagonal SSM at each point of ``s`` -> (S,)."""
    s = s.to(torch.complex128)[:, None]
    return ((c * b).to(torch.complex128) / (s - lam.to(torch.complex128))).sum(-1)
