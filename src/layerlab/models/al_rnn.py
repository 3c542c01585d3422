r"""Almost-Linear RNN (AL-RNN): a piecewise-linear latent map with ReLUs on only P of its M units.

Paper: Brenner, Hemmer, Monfared & Durstewitz, "Almost-Linear RNNs Yield Highly Interpretable
Symbolic Codes in Dynamical Systems Reconstruction", 2024, arXiv:2410.14240.

Equation (latent state ``z_t ∈ R^M``, diagonal ``A``, ``W ∈ R^{M×M}``, bias ``h``)::

    z_t = A z_{t-1} + W Φ*(z_{t-1}) + h,
    Φ*(z) = (z_1, ..., z_{M-P}, max(0, z_{M-P+1}), ..., max(0, z_M))ᵀ

so only the last ``P`` units are rectified. Each sign pattern ``Ω ∈ {0, 1}^P`` of those units
labels a linear subregion in which the map is affine,
``z_t = (A + W D_Ω) z_{t-1} + h``, ``D_Ω = diag(1, ..., 1, Ω_1, ..., Ω_P)``: at most ``2^P``
subregions (``P = 0``: one linear map), and the sequence of visited ``Ω`` is the model's symbolic
code. Fixed points follow in closed form per subregion, ``z* = (I - A - W D_Ω)^{-1} h``, valid
when ``z*``'s own sign pattern is ``Ω`` (``fixed_points``). Observations are the first ``N``
latent units (the paper's identity observation model), ``x_t = z_t[:N]``.

Initialization: ``A = diag(a)`` with ``a`` U(0.5, 0.9), ``W`` N(0, 0.1² / M), ``h = 0``: a
contracting start (spectral radius of every ``A + W D_Ω`` below 1 with high probability).
Deviations: the paper's initialisation and its (sparse/generalised) teacher-forcing training are
not reproduced here; this module is the model and its analysis, used by a [measure] card.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError


class ALRNN(nn.Module):
    """The AL-RNN latent map. ``step(z) -> z'``; ``forward(z0, T)`` rolls it out ``(..., T, M)``."""

    def __init__(self, M: int, P: int, *, N: int | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if isinstance(M, bool) or not isinstance(M, int) or M < 1:
            raise ConfigError(f"ALRNN: M (latent units) must be an integer >= 1, got {M!r}")
        if isinstance(P, bool) or not isinstance(P, int) or not 0 <= P <= M:
            raise ConfigError(f"ALRNN: P (ReLU units) must be an integer in [0, M] = [0, {M}], got {P!r}")
        if N is not None and not 1 <= N <= M:
            raise ConfigError(f"ALRNN: N (observed units) must be in [1, M] = [1, {M}], got {N!r}")
        self.M, self.P, self.N = M, P, M if N is None else N
        self.a = nn.Parameter(torch.empty(M, dtype=dtype))
        self.W = nn.Parameter(torch.empty(M, M, dtype=dtype))
        self.h = nn.Parameter(torch.zeros(M, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.a, 0.5, 0.9)
        nn.init.normal_(self.W, std=0.1 / self.M**0.5)
        nn.init.zeros_(self.h)

    def _check(self, z: Tensor) -> None:
        if z.shape[-1] != self.M:
            raise ShapeError(f"ALRNN expects states with last dim M = {self.M}, got {tuple(z.shape)}")

    def phi(self, z: Tensor) -> Tensor:
        """Φ*: identity on the first M - P units, ReLU on the last P."""
        k = self.M - self.P
        return torch.cat([z[..., :k], torch.relu(z[..., k:])], dim=-1)

    def step(self, z: Tensor) -> Tensor:
        self._check(z)
        return self.a * z + self.phi(z) @ self.W.T + self.h

    def forward(self, z0: Tensor, T: int) -> Tensor:
        if T < 1:
            raise ConfigError(f"ALRNN.forward: T must be >= 1, got {T}")
        out, z = [], z0
        for _ in range(T):
            z = self.step(z)
            out.append(z)
        return torch.stack(out, dim=-2)

    def observe(self, z: Tensor) -> Tensor:
        """x_t = z_t[:N]."""
        return z[..., : self.N]

    def region(self, z: Tensor) -> Tensor:
        """Ω(z) ∈ {0, 1}^P: which ReLU units are active (z_i > 0), shape (..., P)."""
        self._check(z)
        return (z[..., self.M - self.P:] > 0).to(torch.long)

    def region_matrix(self, omega: Tensor) -> Tensor:
        """A + W D_Ω for one pattern ``omega`` (shape (P,)): the map inside that subregion."""
        if omega.shape != (self.P,):
            raise ShapeError(f"ALRNN.region_matrix expects a pattern of shape ({self.P},), got {tuple(omega.shape)}")
        d = torch.cat([torch.ones(self.M - self.P, dtype=self.W.dtype), omega.to(self.W.dtype)])
        return torch.diag(self.a) + self.W * d

    def fixed_points(self) -> list[tuple[tuple[int, ...], Tensor]]:
        """Every fixed point, one linear solve per subregion ``Ω`` (2^P solves), kept when its own
        sign pattern is ``Ω`` (points on a boundary, z_i = 0, count for the pattern Ω_i = 0)."""
        eye = torch.eye(self.M, dtype=self.W.dtype)
        found = []
        with torch.no_grad():
            for omega in itertools.product((0, 1), repeat=self.P):
                om = torch.tensor(omega, dtype=torch.long)
                mat = eye - self.region_matrix(om)
                if torch.linalg.matrix_rank(mat) < self.M:
                    continue
                z = torch.linalg.solve(mat, self.h)
                if torch.equal(self.region(z), om):
                    found.append((omega, z))
        return found
