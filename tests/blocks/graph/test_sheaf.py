"""Connection-Laplacian sheaves (arXiv:2206.08702): orthogonal Procrustes maps, L = δ^T δ PSD, its
kernel = the global sections (d per component for a consistent connection, 0 for a generic one),
flat data give a consistent connection, dense = message passing, the diffusion layer."""
import pytest
import torch

from layerlab.blocks.graph.sheaf import (SheafDiffusion, connection_maps, global_sections_dim, orthogonal_procrustes,
                                         sheaf_laplacian_apply, sheaf_laplacian_dense)
from layerlab.errors import ConfigError, ShapeError

G = torch.Generator().manual_seed(0)


def ring_with_chords(n, chords):
    src = list(range(n)) + [a for a, _ in chords]
    dst = [(i + 1) % n for i in range(n)] + [b for _, b in chords]
    return torch.tensor([src, dst])


def random_rotations(m, d):
    Q, R = torch.linalg.qr(torch.randn(m, d, d, generator=G, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def consistent_maps(ei, R):
    """F_{v⊴e} = R_v^T: a global section is x_v = R_v c."""
    return torch.stack([R[ei[0]].transpose(-1, -2), R[ei[1]].transpose(-1, -2)], 1)


def test_procrustes_is_the_closest_orthogonal_matrix():
    M = torch.randn(3, 3, generator=G, dtype=torch.float64)
    O = orthogonal_procrustes(M)
    assert (O.T @ O - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-12
    for Q in random_rotations(20, 3):
        assert (O - M).norm() <= (Q - M).norm() + 1e-12


def test_laplacian_is_psd_and_equals_coboundary_square():
    ei = ring_with_chords(7, [(0, 3), (2, 5)])
    maps = torch.stack([random_rotations(9, 3), random_rotations(9, 3)], 1)
    L = sheaf_laplacian_dense(ei, maps, 7)
    delta = torch.zeros(9 * 3, 7 * 3, dtype=torch.float64)
    for i, (v, u) in enumerate(ei.T.tolist()):
        delta[3 * i:3 * i + 3, 3 * v:3 * v + 3] = maps[i, 0]
        delta[3 * i:3 * i + 3, 3 * u:3 * u + 3] = -maps[i, 1]
    assert torch.allclose(L, delta.T @ delta, atol=1e-12)
    assert torch.linalg.eigvalsh(L).min() > -1e-12


def test_trivial_sheaf_is_the_graph_laplacian():
    ei = ring_with_chords(5, [(0, 2)])
    maps = torch.ones(6, 2, 1, 1, dtype=torch.float64)
    A = torch.zeros(5, 5, dtype=torch.float64)
    A[ei[0], ei[1]] = A[ei[1], ei[0]] = 1
    assert torch.equal(sheaf_laplacian_dense(ei, maps, 5), torch.diag(A.sum(1)) - A)


@pytest.mark.parametrize("components", [1, 2])
def test_kernel_is_the_global_sections_for_a_consistent_connection(components):
    d, n = 3, 6
    ei = ring_with_chords(n, [(0, 3)])
    if components == 2:  # a second, disjoint copy
        ei = torch.cat([ei, ei + n], 1)
    N = n * components
    R = random_rotations(N, d)
    maps = consistent_maps(ei, R)
    L = sheaf_laplacian_dense(ei, maps, N)
    w, V = torch.linalg.eigh(L)
    kernel = V[:, w < 1e-9]
    assert kernel.shape[1] == d * components == global_sections_dim(ei, maps, N)
    x = kernel.T.reshape(-1, N, d, 1)
    assert (maps[:, 0] @ x[:, ei[0]] - maps[:, 1] @ x[:, ei[1]]).abs().max() < 1e-10  # sections
    c = torch.randn(d, generator=G, dtype=torch.float64)
    section = (R[:n] @ c).reshape(-1)  # x_v = R_v c on the first component
    assert (L[:n * d, :n * d] @ section).abs().max() < 1e-12


def test_inconsistent_connection_has_no_section_and_flat_data_are_consistent():
    n, p, d = 10, 6, 3
    ei = ring_with_chords(n, [(0, 4), (2, 6), (3, 8), (5, 9), (1, 7)])
    maps = torch.stack([random_rotations(ei.shape[1], d), random_rotations(ei.shape[1], d)], 1)
    assert global_sections_dim(ei, maps, n) == 0
    B = torch.linalg.qr(torch.randn(p, d, generator=G, dtype=torch.float64))[0]
    flat = torch.randn(n, d, generator=G, dtype=torch.float64) @ B.T  # points on a d-dim linear subspace
    cm = connection_maps(flat, ei, d)
    assert (cm[:, 1].transpose(-1, -2) @ cm[:, 1] - torch.eye(d, dtype=torch.float64)).abs().max() < 1e-12
    assert global_sections_dim(ei, cm, n) == d
    assert global_sections_dim(ei, connection_maps(torch.randn(n, p, generator=G, dtype=torch.float64), ei, d), n) == 0


@pytest.mark.parametrize("normalised", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_message_passing_equals_dense(normalised, dtype, tol):
    ei = ring_with_chords(8, [(0, 4), (1, 6)])
    maps = connection_maps(torch.randn(8, 5, generator=G, dtype=torch.float64), ei, 2)
    X = torch.randn(3, 8, 2, 4, generator=G, dtype=torch.float64)
    ref = (sheaf_laplacian_dense(ei, maps, 8, normalised) @ X.reshape(3, 16, 4)).reshape(3, 8, 2, 4)
    out = sheaf_laplacian_apply(X.to(dtype), ei, maps.to(dtype), normalised)
    assert (out.double() - ref).norm() / ref.norm() <= tol


def test_diffusion_layer_fast_equals_reference_and_fixes_sections():
    n, d, f = 6, 3, 4
    ei = ring_with_chords(n, [])  # a cycle: regular, so Δ's kernel is L's
    R = random_rotations(n, d)
    torch.manual_seed(0)
    layer = SheafDiffusion(ei, consistent_maps(ei, R), n, f, dtype=torch.float64)
    x = torch.randn(2, n * d, f, dtype=torch.float64, requires_grad=True)
    outs = []
    for mode in ("fast", "reference"):
        y = layer(x, mode)
        outs.append((y,) + torch.autograd.grad((y ** 2).sum(), [x, layer.W1, layer.W2]))
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= 1e-10
    with torch.no_grad():
        layer.W1.copy_(torch.eye(d))  # W1 = I keeps a global section a section
        section = (R @ torch.randn(d, f, dtype=torch.float64)).reshape(n * d, f)
        assert (layer(section) - section).abs().max() < 1e-12


def test_errors():
    ei = ring_with_chords(4, [])
    maps = torch.ones(4, 2, 1, 1)
    with pytest.raises(ConfigError, match="self-loop"):
        sheaf_laplacian_dense(torch.tensor([[0], [0]]), maps[:1], 4)
    with pytest.raises(ShapeError, match="maps must have shape"):
        SheafDiffusion(ei, torch.ones(3, 2, 1, 1), 4, 2)
    with pytest.raises(ShapeError, match="expected"):
        SheafDiffusion(ei, maps, 4, 2)(torch.ones(5, 2))
    with pytest.raises(ConfigError, match="d must be"):
        connection_maps(torch.randn(4, 2), ei, 3)
