"""Matrix-function layers: permutation-equivariant, non-local, and the resolvent expansion computes
the matrix function exactly.

Paper: Batatia et al., "Equivariant Matrix Function Neural Networks", 2023, arXiv:2310.10434: MFNs
"parameterize non-local interactions through analytic matrix equivariant functions", implemented by
resolvent expansions ``f(H) = sum_p w_p (H - z_p I)^{-1}``.

Per seed the measurement draws a connected graph (a random spanning tree on ``nodes`` vertices plus
``extra_edges`` random edges), a ``MatrixFunctionLayer`` with random parameters and node features
(float64), and returns ``equivariance``: the largest ``|f(P h, P A P^T) - P f(h, A)|`` over ``perms``
random permutations; ``resolvent``: the relative gap between the resolvent (linear solves) and
spectral (eigendecomposition) forms; ``influence``: the change of node u's output when the features
of the node farthest from u (graph distance ``distance``) change by 1; ``error = equivariance +
resolvent + [influence < 1e-12]`` (the last term fails a local, few-hop layer).
"""
from __future__ import annotations

import torch

from ...blocks.graph.matrix_function import MFN_PAPER, MatrixFunctionLayer
from ...errors import ConfigError
from . import register_measure


def _distances(A: torch.Tensor, src: int) -> list[int]:
    n = A.shape[0]
    dist = [-1] * n
    dist[src], frontier = 0, [src]
    while frontier:
        nxt = []
        for v in frontier:
            for u in torch.nonzero(A[v]).flatten().tolist():
                if dist[u] < 0:
                    dist[u] = dist[v] + 1
                    nxt.append(u)
        frontier = nxt
    return dist


@register_measure("matrix_function_layer", metric="error", paper=MFN_PAPER)
def matrix_function_layer(seed: int, *, nodes: int = 10, extra_edges: int = 2, perms: int = 3) -> dict[str, float]:
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 3 <= nodes <= 64:
        raise ConfigError(f"matrix_function_layer: nodes must be an integer in [3, 64], got {nodes!r}")
    if isinstance(extra_edges, bool) or not isinstance(extra_edges, int) or extra_edges < 0:
        raise ConfigError(f"matrix_function_layer: extra_edges must be an integer >= 0, got {extra_edges!r}")
    g = torch.Generator().manual_seed(seed)
    A = torch.zeros(nodes, nodes, dtype=torch.float64)
    for v in range(1, nodes):  # random tree: connected
        u = int(torch.randint(v, (1,), generator=g))
        A[u, v] = A[v, u] = 1
    for _ in range(extra_edges):
        a, b = torch.randint(nodes, (2,), generator=g).tolist()
        if a != b:
            A[a, b] = A[b, a] = 1
    with torch.random.fork_rng(devices=[]):
        layer = MatrixFunctionLayer(4, 3, channels=2, poles=4, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
        h = torch.randn(nodes, 4, generator=g, dtype=torch.float64)
        y = layer(h, A)
        resolvent = ((y - layer(h, A, "reference")).abs().max() / y.abs().max().clamp_min(1.0)).item()
        eq = 0.0
        for _ in range(perms):
            p = torch.randperm(nodes, generator=g)
            eq = max(eq, (layer(h[p], A[p][:, p]) - y[p]).abs().max().item())
        dist = _distances(A, 0)
        far = max(range(nodes), key=lambda v: dist[v])
        h2 = h.clone()
        h2[far] += 1.0
        influence = (layer(h2, A) - y)[0].abs().max().item()
    return {"error": eq + resolvent + float(influence < 1e-12), "equivariance": eq, "resolvent": resolvent,
            "influence": influence, "distance": float(dist[far])}
