"""Equivariant matrix-function layer: non-local node updates through an analytic function of a
learned, permutation-equivariant symmetric matrix, evaluated by a resolvent (pole) expansion.

Paper: Batatia, Schaaf, Chen, Csányi, Ortner & Faber, "Equivariant Matrix Function Neural Networks",
2023, arXiv:2310.10434. From node features ``h ∈ R^{n x f}`` on a graph (adjacency A) each channel c
builds a self-adjoint matrix ``H_c(h)`` whose entries follow the graph,

    (H_c)_ii = v_c · h_i + a_c,      (H_c)_ij = A_ij (u_c · (h_i + h_j) / 2 + b_c)   (i != j),

(symmetric, and ``H_c(P h) = P H_c(h) P^T`` for a node permutation P), and applies a matrix function
in resolvent form,

    f_c(H) = sum_{p=1}^{P} w_{c,p} Re[(H - z_p I)^{-1}],      z_p = α_p + i β_p,  β_p > 0,

which is analytic on the real spectrum of H and couples every pair of nodes in a connected
component (non-local, unlike a fixed number of message-passing hops). The update is

    h'_i = (h W_self)_i + sum_c [f_c(H_c) (h W_c)]_i.

This is the paper's matrix-function block on a plain graph (the O(3)-equivariant geometric version
with higher-order features is not built). Modes: ``"reference"`` evaluates ``f_c`` spectrally
(``H = U Λ U^T``, ``f(H) = U f(Λ) U^T``), ``"resolvent"`` solves ``(H - z_p I) y = h W_c`` for each
pole (complex linear solves, no eigendecomposition, no inverse formed); tested equal (float64
<= 1e-10). Initialisation (not given for this form): poles ``α_p`` evenly in [-2, 2], ``β_p = 1``,
``w ~ N(0, 1/P)``, ``u, v ~ N(0, 1/f)``, ``a = b = 0``, ``W`` like nn.Linear. Shapes: h ``(n, f)`` or
``(B, n, f)``, adjacency ``(n, n)`` (symmetric 0/1, zero diagonal) -> ``(*, n, out_features)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper

MFN_PAPER = Paper("Equivariant Matrix Function Neural Networks", 2023, "2310.10434")


class MatrixFunctionLayer(nn.Module):
    """``h' = h W_self + sum_c f_c(H_c(h)) h W_c`` with ``f_c`` a resolvent expansion."""

    def __init__(self, in_features: int, out_features: int, *, channels: int = 2, poles: int = 4,
                 device=None, dtype=None) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features), ("channels", channels),
                        ("poles", poles)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"MatrixFunctionLayer: {name} must be an integer >= 1, got {v!r}")
        kw = dict(device=device, dtype=dtype)
        f, C, P = in_features, channels, poles
        self.in_features, self.out_features, self.channels, self.poles = f, out_features, C, P
        self.u = nn.Parameter(torch.randn(C, f, **kw) / math.sqrt(f))
        self.v = nn.Parameter(torch.randn(C, f, **kw) / math.sqrt(f))
        self.a = nn.Parameter(torch.zeros(C, **kw))
        self.b = nn.Parameter(torch.zeros(C, **kw))
        self.alpha = nn.Parameter(torch.linspace(-2, 2, P, **kw).repeat(C, 1))
        self.log_beta = nn.Parameter(torch.zeros(C, P, **kw))  # β = exp(log β) > 0 keeps H - z invertible
        self.w = nn.Parameter(torch.randn(C, P, **kw) / math.sqrt(P))
        self.W_self = nn.Linear(f, out_features, **kw)
        self.W = nn.Parameter(torch.empty(C, f, out_features, **kw))
        bound = 1 / math.sqrt(f)
        nn.init.uniform_(self.W, -bound, bound)

    def matrices(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``H_c(h)``: ``(*, C, n, n)`` symmetric, supported on the graph and the diagonal."""
        A = adjacency.to(h)
        diag = torch.einsum("cf,...nf->...cn", self.v, h) + self.a[:, None]
        node = torch.einsum("cf,...nf->...cn", self.u, h) / 2
        off = (node[..., :, None] + node[..., None, :] + self.b[:, None, None]) * A
        return off + torch.diag_embed(diag)

    def _check(self, h: torch.Tensor, adjacency: torch.Tensor) -> None:
        n = adjacency.shape[-1]
        if adjacency.dim() != 2 or adjacency.shape[0] != n:
            raise ShapeError(f"MatrixFunctionLayer: adjacency must be (n, n), got {tuple(adjacency.shape)}")
        if not torch.equal(adjacency, adjacency.T) or bool(adjacency.diagonal().any()):
            raise ConfigError("MatrixFunctionLayer: adjacency must be symmetric with a zero diagonal (an undirected "
                              "simple graph)")
        if h.dim() < 2 or h.shape[-2:] != (n, self.in_features):
            raise ShapeError(f"MatrixFunctionLayer: expected h of shape (*, n, in_features) = (*, {n}, "
                             f"{self.in_features}), got {tuple(h.shape)}")

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor, mode: str = "resolvent") -> torch.Tensor:
        self._check(h, adjacency)
        H = self.matrices(h, adjacency)  # (*, C, n, n)
        x = torch.einsum("...nf,cfo->...cno", h, self.W)  # (*, C, n, out)
        z = torch.complex(self.alpha, self.log_beta.exp())  # (C, P)
        if mode == "reference":
            lam, U = torch.linalg.eigh(H)  # f(H) = U f(Λ) U^T
            f_lam = (self.w[..., None] * (1 / (lam[..., None, :] - z[..., None])).real).sum(-2)  # (*, C, n)
            y = U @ (f_lam[..., None] * (U.transpose(-1, -2) @ x))
        elif mode == "resolvent":
            n = H.shape[-1]
            eye = torch.eye(n, dtype=H.dtype, device=H.device)
            Hz = H[..., None, :, :].to(z.dtype) - z[..., None, None] * eye  # (*, C, P, n, n)
            sol = torch.linalg.solve(Hz, x[..., None, :, :].to(z.dtype)).real  # (H - z_p)^{-1} x
            y = (self.w[..., None, None] * sol).sum(-3)
        else:
            raise ConfigError(f"MatrixFunctionLayer: unknown mode {mode!r}; valid modes: 'reference', 'resolvent'")
        return self.W_self(h) + y.sum(-3)
