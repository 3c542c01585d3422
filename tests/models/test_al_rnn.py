"""AL-RNN (arXiv:2410.14240): the equation, P = 0 is linear, piecewise-linear subregions (<= 2^P), fixed points."""
import pytest
import torch

from layerlab.errors import ConfigError, ShapeError
from layerlab.models.al_rnn import ALRNN


def _model(M=6, P=2, seed=0, scale=1.0):
    torch.manual_seed(seed)
    m = ALRNN(M, P, dtype=torch.float64)
    with torch.no_grad():
        m.W.mul_(scale * 10)
        m.h.normal_()
    return m


def test_step_is_the_equation():
    m = _model()
    z = torch.randn(5, 6, dtype=torch.float64)
    phi = z.clone()
    phi[:, 4:] = phi[:, 4:].clamp(min=0)
    expect = torch.stack([torch.diag(m.a) @ zi + m.W @ pi + m.h for zi, pi in zip(z, phi)])
    assert torch.allclose(m.step(z), expect, rtol=1e-12, atol=1e-12)
    traj = m(z, 4)
    assert traj.shape == (5, 4, 6)
    assert torch.allclose(traj[:, 1], m.step(m.step(z)), rtol=1e-12, atol=1e-12)


def test_p0_is_affine():
    m = _model(P=0)
    z1, z2 = torch.randn(2, 10, 6, dtype=torch.float64)
    lin = lambda z: m.step(z) - m.h  # noqa: E731
    assert torch.allclose(lin(2.0 * z1 - 3.0 * z2), 2.0 * lin(z1) - 3.0 * lin(z2), rtol=1e-10, atol=1e-12)
    assert m.region(z1).shape == (10, 0)
    assert len(m.fixed_points()) == 1  # a single linear region: one fixed point (I - A - W invertible)


def test_p_relus_are_not_affine():
    m = _model(P=2)
    z = torch.randn(1000, 6, dtype=torch.float64)
    lin = lambda z: m.step(z) - m.h  # noqa: E731
    assert not torch.allclose(lin(-z), -lin(z))


@pytest.mark.parametrize("P", [0, 1, 3])
def test_subregions_at_most_two_to_the_p_and_affine_inside(P):
    m = _model(M=6, P=P)
    z = 3 * torch.randn(4000, 6, dtype=torch.float64)
    omegas = m.region(z)
    patterns = {tuple(o.tolist()) for o in omegas}
    assert len(patterns) <= 2**P and len(patterns) == 2**P  # 4000 Gaussian draws visit every orthant pattern
    for pat in patterns:
        sel = (omegas == torch.tensor(pat)).all(-1)
        mat = m.region_matrix(torch.tensor(pat, dtype=torch.long))
        assert torch.allclose(m.step(z[sel]), z[sel] @ mat.T + m.h, rtol=1e-10, atol=1e-12)


def test_fixed_points_are_fixed_and_complete():
    m = _model(M=4, P=3, seed=3)
    fps = m.fixed_points()
    for omega, z in fps:
        assert torch.allclose(m.step(z), z, rtol=1e-10, atol=1e-10)
        assert tuple(m.region(z).tolist()) == omega
    # iterating from many starts never converges to a point the enumeration missed
    z = torch.randn(200, 4, dtype=torch.float64)
    with torch.no_grad():
        m.W.mul_(0.01)  # contracting: a unique fixed point, reached from anywhere
        (omega, zstar), = m.fixed_points()
        for _ in range(500):
            z = m.step(z)
    assert torch.allclose(z, zstar.expand_as(z), atol=1e-9)


def test_strict_options():
    with pytest.raises(ConfigError, match="P"):
        ALRNN(4, 5)
    with pytest.raises(ConfigError, match="M"):
        ALRNN(0, 0)
    with pytest.raises(ConfigError, match="N"):
        ALRNN(4, 1, N=7)
    with pytest.raises(ShapeError, match="M = 4"):
        ALRNN(4, 1).step(torch.zeros(3))
