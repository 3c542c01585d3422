"""MatrixFunctionLayer (arXiv:2310.10434): resolvent = spectral evaluation, the resolvent by an
explicit inverse, exact permutation equivariance, H_c symmetric on the graph, non-locality (a node
8 hops away changes the output; nothing crosses between components)."""
import pytest
import torch

from layerlab.blocks.graph import MatrixFunctionLayer
from layerlab.errors import ConfigError, ShapeError


def path(n):
    A = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n - 1):
        A[i, i + 1] = A[i + 1, i] = 1
    return A


def _layer(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    m = MatrixFunctionLayer(4, 3, dtype=dtype, **kw)
    with torch.no_grad():
        m.a.normal_()
        m.b.normal_()
    return m


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_resolvent_equals_spectral_with_gradients(dtype, tol):
    m = _layer(dtype)
    A = path(7).to(dtype)
    h = torch.randn(2, 7, 4, dtype=dtype, requires_grad=True)
    outs = []
    for mode in ("reference", "resolvent"):
        y = m(h, A, mode)
        outs.append((y,) + torch.autograd.grad((y ** 2).sum(), [h, m.u, m.alpha, m.w]))
    for a, b in zip(*outs):
        assert (a - b).norm() / b.norm() <= tol


def test_one_pole_is_the_real_part_of_the_inverse():
    m = _layer(channels=1, poles=1)
    A = path(5)
    h = torch.randn(5, 4, dtype=torch.float64)
    H = m.matrices(h, A)[0]
    assert torch.equal(H, H.T) and torch.equal((H != 0) & ~torch.eye(5, dtype=torch.bool), (A != 0) & (H != 0))
    z = complex(m.alpha[0, 0].item(), m.log_beta[0, 0].exp().item())
    R = torch.linalg.inv(H.to(torch.complex128) - z * torch.eye(5, dtype=torch.complex128)).real
    expect = m.W_self(h) + m.w[0, 0] * R @ (h @ m.W[0])
    assert (m(h, A) - expect).abs().max() < 1e-12


def test_permutation_equivariant():
    m = _layer()
    A = path(8)
    A[0, 5] = A[5, 0] = 1
    h = torch.randn(3, 8, 4, dtype=torch.float64)
    for s in range(3):
        p = torch.randperm(8, generator=torch.Generator().manual_seed(s))
        for mode in ("reference", "resolvent"):
            assert (m(h[:, p], A[p][:, p], mode) - m(h, A, mode)[:, p]).abs().max() < 1e-12


def test_non_local_but_not_across_components():
    m = _layer()
    A = path(9)
    h = torch.randn(9, 4, dtype=torch.float64)
    far = h.clone()
    far[8] += 1.0  # 8 hops from node 0
    assert (m(far, A) - m(h, A))[0].abs().max() > 1e-8  # a few message-passing hops would give exactly 0
    B = torch.block_diag(path(4), path(5))  # two components
    assert (m(far, B) - m(h, B))[:4].abs().max() == 0


def test_errors():
    m = _layer()
    with pytest.raises(ShapeError, match="expected h"):
        m(torch.randn(5, 3, dtype=torch.float64), path(5))
    with pytest.raises(ConfigError, match="symmetric"):
        m(torch.randn(5, 4, dtype=torch.float64), torch.triu(torch.ones(5, 5, dtype=torch.float64), 1))
    with pytest.raises(ConfigError, match="unknown mode"):
        m(torch.randn(5, 4, dtype=torch.float64), path(5), "fast")
    with pytest.raises(ConfigError, match="poles"):
        MatrixFunctionLayer(4, 3, poles=0)
