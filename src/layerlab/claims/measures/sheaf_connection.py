"""Connection Laplacian: positive semi-definite, and its kernel is the space of global sections,
of dimension d when the connection computed from the data is consistent.

Paper: Barbero et al., "Sheaf Neural Networks with Connection Laplacians", 2022, arXiv:2206.08702:
restriction maps ``O_vu = argmin_{O ∈ O(d)} ||O - O_v^T O_u||_F`` from local PCA bases ``O_v``
(the manifold assumption); the sheaf Laplacian ``L_F = δ^T δ`` is PSD and ``ker L_F = H^0`` (global
sections, ``F_{v⊴e} x_v = F_{u⊴e} x_u`` on every edge). For data on a flat d-dimensional manifold
(here: a random d-dimensional linear subspace of R^p) the aligned tangent spaces compose without
holonomy, so on a connected graph ``dim H^0 = d``.

Per seed the measurement draws a connected graph (a ring on ``nodes`` vertices plus ``chords``
random chords), points on a random d-dimensional subspace, builds the connection maps
(``blocks.graph.sheaf.connection_maps``) and returns

    psd = max(0, -λ_min(L)) / λ_max(L),   kernel_error = |#{λ <= 1e-9 λ_max} - d| + |dim H^0 - d|,
    section_residual = max_{x ∈ ker L, |x| = 1} |δ x|,   error = psd + kernel_error + section_residual,

with ``dim H^0`` the nullity of the coboundary δ; ``generic_kernel``: ``dim ker L`` for Gaussian
features in R^p (no flat structure; reported, typically 0).
"""
from __future__ import annotations

import torch

from ...blocks.graph.sheaf import SHEAF_PAPER, connection_maps, global_sections_dim, sheaf_laplacian_dense
from ...errors import ConfigError
from . import register_measure


@register_measure("connection_laplacian_sections", metric="error", paper=SHEAF_PAPER)
def connection_laplacian_sections(seed: int, *, nodes: int = 12, chords: int = 6, p: int = 6,
                                  d: int = 3) -> dict[str, float]:
    for name, v, lo in (("nodes", nodes, 4), ("chords", chords, 0), ("p", p, 2), ("d", d, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"connection_laplacian_sections: {name} must be an integer >= {lo}, got {v!r}")
    if d >= p:
        raise ConfigError(f"connection_laplacian_sections: need d < p (a proper subspace), got d = {d}, p = {p}")
    g = torch.Generator().manual_seed(seed)
    edges = {(i, (i + 1) % nodes) for i in range(nodes)}
    while len(edges) < nodes + chords:
        a, b = torch.randint(nodes, (2,), generator=g).tolist()
        if a != b and (a, b) not in edges and (b, a) not in edges:
            edges.add((a, b))
    ei = torch.tensor(sorted(edges)).T
    B, _ = torch.linalg.qr(torch.randn(p, d, generator=g, dtype=torch.float64))
    x = torch.randn(nodes, d, generator=g, dtype=torch.float64) @ B.T
    maps = connection_maps(x, ei, d)
    L = sheaf_laplacian_dense(ei, maps, nodes)
    w, V = torch.linalg.eigh(L)
    top = float(w.max())
    psd = max(0.0, -float(w.min())) / top
    kernel = V[:, w <= 1e-9 * top]
    h0 = global_sections_dim(ei, maps, nodes)
    xs = kernel.T.reshape(-1, nodes, d, 1)
    residual = float((maps[:, 0] @ xs[:, ei[0]] - maps[:, 1] @ xs[:, ei[1]]).abs().max()) if kernel.shape[1] else 0.0
    kernel_error = abs(kernel.shape[1] - d) + abs(h0 - d)
    generic = connection_maps(torch.randn(nodes, p, generator=g, dtype=torch.float64), ei, d)
    wg = torch.linalg.eigvalsh(sheaf_laplacian_dense(ei, generic, nodes))
    return {"error": psd + kernel_error + residual, "psd": psd, "kernel_error": float(kernel_error),
            "section_residual": residual, "kernel_dim": float(kernel.shape[1]), "h0": float(h0),
            "generic_kernel": float((wg <= 1e-9 * wg.max()).sum()), "edges": float(ei.shape[1])}
