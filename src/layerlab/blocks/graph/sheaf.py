"""Sheaf diffusion with connection Laplacians: an orthogonal sheaf computed from the data, its
Laplacian, and the neural sheaf diffusion layer on it.

Paper: Barbero, Bodnar, Sáez de Ocáriz Borde, Bronstein, Veličković & Liò, "Sheaf Neural Networks
with Connection Laplacians", 2022, arXiv:2206.08702. A sheaf on a graph G = (V, E) with d-dimensional
stalks has restriction maps ``F_{v⊴e} ∈ O(d)``. Here they are computed, not learned: with the
manifold assumption, each node v gets a local tangent basis ``O_v ∈ R^{p x d}`` by local PCA of its
neighbourhood's features (centred at x_v; the top d left singular vectors; the graph neighbourhood
grown hop by hop to at least 2d points), and each edge e = (v, u) the
orthogonal map that best aligns the two bases,

    O_vu = argmin_{O ∈ O(d)} || O - O_v^T O_u ||_F = U V^T   (O_v^T O_u = U Σ V^T),

set as ``F_{v⊴e} = I``, ``F_{u⊴e} = O_vu`` (so the transport u -> v, from u's tangent coordinates
to v's, is ``F_{v⊴e}^T F_{u⊴e} = O_vu``; any pair with this product gives the same Laplacian). The sheaf (connection) Laplacian acts on
``x ∈ R^{|V| d}`` by

    (L_F x)_v = sum_{e = (v, u)} F_{v⊴e}^T (F_{v⊴e} x_v - F_{u⊴e} x_u),

block-diagonal ``D_v = sum_e F_{v⊴e}^T F_{v⊴e} = deg(v) I``, normalised ``Δ_F = D^{-1/2} L_F D^{-1/2}``.
``L_F = δ^T δ`` (δ the coboundary) is positive semi-definite and its kernel is the space of global
sections ``{x : F_{v⊴e} x_v = F_{u⊴e} x_u for every edge}``. The diffusion layer (neural sheaf
diffusion, as used by the paper with the computed sheaf):

    X_{t+1} = X_t - σ(Δ_F (I_{|V|} ⊗ W_1) X_t W_2),      X_t ∈ R^{|V| d x f},  W_1 ∈ R^{d x d},  W_2 ∈ R^{f x f}.

Reference forms build the dense ``|V| d x |V| d`` Laplacian block by block; fast forms apply it by
message passing over the edges (tested equal, float64 <= 1e-10). Initialisation (not in the paper):
``W_1 = I + N(0, 0.01)``, ``W_2`` Kaiming-uniform like nn.Linear. Input: ``(|V| d, f)`` or
``(B, |V| d, f)``; graph: ``edge_index`` (2, |E|) undirected edges listed once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper

SHEAF_PAPER = Paper("Sheaf Neural Networks with Connection Laplacians", 2022, "2206.08702")


def _check_edges(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    e = torch.as_tensor(edge_index, dtype=torch.long)
    if e.dim() != 2 or e.shape[0] != 2:
        raise ShapeError(f"edge_index must have shape (2, E), got {tuple(e.shape)}; stack the (source, target) rows")
    if e.numel() and (int(e.min()) < 0 or int(e.max()) >= num_nodes):
        raise ConfigError(f"edge_index refers to nodes outside [0, {num_nodes}); renumber the nodes")
    if bool((e[0] == e[1]).any()):
        raise ConfigError("edge_index has a self-loop; a sheaf on a simple graph has none: drop it")
    return e


def orthogonal_procrustes(M: torch.Tensor) -> torch.Tensor:
    """``argmin_{O ∈ O(d)} ||O - M||_F = U V^T`` for ``M = U Σ V^T`` (batched over leading dims)."""
    U, _, Vh = torch.linalg.svd(M)
    return U @ Vh


def local_pca_bases(x: torch.Tensor, edge_index: torch.Tensor, d: int, min_points: int | None = None) -> torch.Tensor:
    """``O_v ∈ R^{p x d}`` per node: top-d left singular vectors of the neighbourhood's features minus x_v.

    The neighbourhood is v's graph neighbours, grown hop by hop until it holds at least
    ``min_points`` (default 2d) other nodes or the component is exhausted: a node of degree < d
    would otherwise leave part of its basis undetermined (our choice; the paper takes local
    neighbourhoods of the data points)."""
    n, p = x.shape
    if not 1 <= d <= p:
        raise ConfigError(f"local_pca_bases: d must be in [1, p = {p}], got {d}")
    e = _check_edges(edge_index, n)
    want = 2 * d if min_points is None else min_points
    adj = [set() for _ in range(n)]
    for a, b in e.T.tolist():
        adj[a].add(b)
        adj[b].add(a)
    bases = []
    for v in range(n):
        hood, frontier = set(adj[v]), set(adj[v])
        while len(hood - {v}) < want and frontier:
            frontier = {w for u in frontier for w in adj[u]} - hood - {v}
            hood |= frontier
        nbrs = torch.tensor(sorted(hood - {v}), dtype=torch.long)
        diffs = (x[nbrs] - x[v]).T if len(nbrs) else torch.zeros(p, 1, dtype=x.dtype)
        U, _, _ = torch.linalg.svd(diffs, full_matrices=True)
        bases.append(U[:, :d])
    return torch.stack(bases)  # (n, p, d)


def connection_maps(x: torch.Tensor, edge_index: torch.Tensor, d: int) -> torch.Tensor:
    """Restriction maps ``(E, 2, d, d)``: ``F_{v⊴e} = I`` and ``F_{u⊴e} = O_vu`` for e = (v, u)."""
    O = local_pca_bases(x, edge_index, d)
    e = torch.as_tensor(edge_index, dtype=torch.long)
    O_vu = orthogonal_procrustes(O[e[0]].transpose(-1, -2) @ O[e[1]])
    eye = torch.eye(d, dtype=x.dtype).expand_as(O_vu)
    return torch.stack([eye, O_vu], 1)


def sheaf_laplacian_dense(edge_index: torch.Tensor, maps: torch.Tensor, num_nodes: int,
                          normalised: bool = False) -> torch.Tensor:
    """``L_F`` (or ``Δ_F``) as a dense ``(n d, n d)`` matrix, block by block (reference)."""
    e = _check_edges(edge_index, num_nodes)
    d = maps.shape[-1]
    L = torch.zeros(num_nodes * d, num_nodes * d, dtype=maps.dtype)
    blk = lambda a, b: (slice(a * d, (a + 1) * d), slice(b * d, (b + 1) * d))  # noqa: E731
    for i in range(e.shape[1]):
        v, u = int(e[0, i]), int(e[1, i])
        Fv, Fu = maps[i, 0], maps[i, 1]
        L[blk(v, v)] += Fv.T @ Fv
        L[blk(u, u)] += Fu.T @ Fu
        L[blk(v, u)] -= Fv.T @ Fu
        L[blk(u, v)] -= Fu.T @ Fv
    if normalised:
        L = _normalise_dense(L, num_nodes, d)
    return L


def _normalise_dense(L: torch.Tensor, n: int, d: int) -> torch.Tensor:
    Dinv = torch.zeros_like(L)
    for v in range(n):
        s = slice(v * d, (v + 1) * d)
        w, Q = torch.linalg.eigh(L[s, s])
        Dinv[s, s] = Q @ torch.diag(torch.where(w > 1e-12, w.clamp_min(1e-12).rsqrt(), torch.zeros_like(w))) @ Q.T
    return Dinv @ L @ Dinv


def sheaf_laplacian_apply(x: torch.Tensor, edge_index: torch.Tensor, maps: torch.Tensor,
                          normalised: bool = False) -> torch.Tensor:
    """``L_F x`` (or ``Δ_F x``) by message passing; x: ``(*, n, d, f)`` (fast form).

    The normalisation assumes orthogonal maps (``D_v = deg(v) I``), as in the connection sheaf."""
    e = torch.as_tensor(edge_index, dtype=torch.long)
    n = x.shape[-3]
    Fv, Fu = maps[:, 0].to(x), maps[:, 1].to(x)
    if normalised:
        deg = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, e.reshape(-1),
                                                                        torch.ones(e.numel(), dtype=x.dtype))
        scale = torch.where(deg > 0, deg.clamp_min(1).rsqrt(), torch.zeros_like(deg))
        x = x * scale[:, None, None]
    xv, xu = x[..., e[0], :, :], x[..., e[1], :, :]
    diff = Fv @ xv - Fu @ xu  # (*, E, d, f): F_v x_v - F_u x_u, the coboundary
    out = torch.zeros_like(x)
    out = out.index_add(-3, e[0], Fv.transpose(-1, -2) @ diff)
    out = out.index_add(-3, e[1], -(Fu.transpose(-1, -2) @ diff))
    if normalised:
        out = out * scale[:, None, None]
    return out


def global_sections_dim(edge_index: torch.Tensor, maps: torch.Tensor, num_nodes: int, tol: float = 1e-9) -> int:
    """``dim H^0 = dim ker δ``: nullity of the coboundary ``(δx)_e = F_{v⊴e} x_v - F_{u⊴e} x_u``."""
    e = _check_edges(edge_index, num_nodes)
    d = maps.shape[-1]
    delta = torch.zeros(e.shape[1] * d, num_nodes * d, dtype=torch.float64)
    for i in range(e.shape[1]):
        v, u = int(e[0, i]), int(e[1, i])
        delta[i * d:(i + 1) * d, v * d:(v + 1) * d] = maps[i, 0].double()
        delta[i * d:(i + 1) * d, u * d:(u + 1) * d] = -maps[i, 1].double()
    s = torch.linalg.svdvals(delta) if delta.numel() else torch.zeros(0, dtype=torch.float64)
    rank = int((s > tol * max(float(s.max()) if s.numel() else 0.0, 1.0)).sum())
    return num_nodes * d - rank


class SheafDiffusion(nn.Module):
    """One layer ``X <- X - σ(Δ_F (I ⊗ W_1) X W_2)`` on a fixed sheaf (edge_index, maps)."""

    def __init__(self, edge_index: torch.Tensor, maps: torch.Tensor, num_nodes: int, channels: int, *,
                 activation: str = "elu", device=None, dtype=None) -> None:
        super().__init__()
        e = _check_edges(edge_index, num_nodes)
        if maps.dim() != 4 or maps.shape[:2] != (e.shape[1], 2) or maps.shape[2] != maps.shape[3]:
            raise ShapeError(f"SheafDiffusion: maps must have shape (E, 2, d, d) = ({e.shape[1]}, 2, d, d), got "
                             f"{tuple(maps.shape)}; build them with connection_maps(x, edge_index, d)")
        acts = {"elu": F.elu, "tanh": torch.tanh, "identity": lambda t: t}
        if activation not in acts:
            raise ConfigError(f"SheafDiffusion: unknown activation {activation!r}; valid: {sorted(acts)}")
        self.sigma = acts[activation]
        self.num_nodes, self.d, self.channels = num_nodes, maps.shape[-1], channels
        kw = dict(device=device, dtype=dtype)
        self.register_buffer("edge_index", e.to(device))
        self.register_buffer("maps", maps.to(**kw))
        self.W1 = nn.Parameter(torch.eye(self.d, **kw) + 0.1 * torch.randn(self.d, self.d, **kw))
        self.W2 = nn.Parameter(torch.empty(channels, channels, **kw))
        nn.init.kaiming_uniform_(self.W2, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, mode: str = "fast") -> torch.Tensor:
        n, d, f = self.num_nodes, self.d, self.channels
        if x.shape[-2:] != (n * d, f):
            raise ShapeError(f"SheafDiffusion: expected (*, |V| d, f) = (*, {n * d}, {f}), got {tuple(x.shape)}")
        h = torch.einsum("ij,...njf->...nif", self.W1, x.reshape(*x.shape[:-2], n, d, f)) @ self.W2
        if mode == "fast":
            lh = sheaf_laplacian_apply(h, self.edge_index, self.maps, normalised=True).reshape(x.shape)
        elif mode == "reference":
            lh = sheaf_laplacian_dense(self.edge_index, self.maps, n, normalised=True).to(x) @ h.reshape(x.shape)
        else:
            raise ConfigError(f"SheafDiffusion: unknown mode {mode!r}; valid modes: 'fast', 'reference'")
        return x - self.sigma(lh)
