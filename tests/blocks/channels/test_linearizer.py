"""The Linearizer ("Who Said Neural Networks Aren't Linear?", arXiv:2510.08570): the invertible
networks invert exactly (1e-10), f is linear in the induced vector spaces and not in the Euclidean
one, the pseudo-inverse inverts f, two Linearizers sharing a network compose into one."""
from __future__ import annotations

import pytest
import torch

import layerlab
from layerlab.blocks.channels.linearizer import InvertibleNet, Linearizer, induced_add, induced_scale
from layerlab.errors import ConfigError, ShapeError

F64 = torch.float64


def perturbed(d: int = 7, seed: int = 0, scale: float = 0.5, **kw) -> Linearizer:
    """A Linearizer whose couplings are far from the identity they start as."""
    torch.manual_seed(seed)
    f = Linearizer(d, dtype=F64, **kw)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=F64))
    return f


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm()).detach())


@pytest.mark.parametrize("d", [2, 7, 8])
def test_invertible_networks_invert(d: int) -> None:
    f = perturbed(d, depth=3)
    z = rand(5, 3, d)
    for g in (f.g_x, f.g_y):
        assert rel(g(g.inverse(z)), z) <= 1e-10 and rel(g.inverse(g(z)), z) <= 1e-10
        assert rel(g(z), z) > 0.1  # not the identity


def test_f_is_linear_in_the_induced_spaces_and_not_in_euclidean_space() -> None:
    f = perturbed()
    x1, x2 = rand(16, 7, seed=2), rand(16, 7, seed=3)
    a1, a2 = 1.7, -0.6
    gx, gy = f.g_x, f.g_y
    lhs = f(induced_add(gx, induced_scale(gx, a1, x1), induced_scale(gx, a2, x2)))
    rhs = induced_add(gy, induced_scale(gy, a1, f(x1)), induced_scale(gy, a2, f(x2)))
    assert rel(lhs, rhs) <= 1e-10
    # ... while Euclidean superposition fails badly
    assert rel(f(a1 * x1 + a2 * x2), a1 * f(x1) + a2 * f(x2)) > 0.05
    # the induced operations are a vector space's: zero, inverses, distributivity
    zero = gx.inverse(torch.zeros_like(x1))
    assert rel(induced_add(gx, x1, zero), x1) <= 1e-10
    assert induced_add(gx, x1, induced_scale(gx, -1.0, x1)).sub(zero).abs().max() <= 1e-10
    assert rel(induced_scale(gx, a1 + a2, x1), induced_add(gx, induced_scale(gx, a1, x1),
                                                           induced_scale(gx, a2, x1))) <= 1e-10


def test_pseudo_inverse_and_composition() -> None:
    f = perturbed()
    x = rand(9, 7, seed=4)
    assert rel(f.pseudo_inverse(f(x)), x) <= 1e-9  # A is invertible (a random square matrix)
    # rank-deficient A: f⁺ f is the induced-space orthogonal projection, idempotent
    with torch.no_grad():
        f.A.weight[-1] = f.A.weight[0]
    p = f.pseudo_inverse(f(x))
    assert rel(f.pseudo_inverse(f(p)), p) <= 1e-9 and rel(p, x) > 1e-3
    # composition sharing g_y: h(f(x)) = g_z⁻¹(B A g_x(x))
    h = perturbed(seed=5)
    h.g_x = f.g_y
    composed = h.g_y.inverse(f.g_x(x) @ (h.A.weight @ f.A.weight).T)
    assert rel(h(f(x)), composed) <= 1e-10


def test_starts_as_the_linear_map_and_is_strict() -> None:
    torch.manual_seed(0)
    f = Linearizer(6, dtype=F64)
    x = rand(4, 6)
    torch.testing.assert_close(f(x), x @ f.A.weight.T, rtol=0, atol=1e-14)  # identity couplings at init
    assert isinstance(layerlab.build("channel", "linearizer", 8, depth=3).g_x, InvertibleNet)
    with pytest.raises(ConfigError, match="d_model must be >= 2"):
        layerlab.build("channel", "linearizer", 1)
    with pytest.raises(ConfigError, match="depth and hidden"):
        layerlab.build("channel", "linearizer", 4, depth=0)
    with pytest.raises(ShapeError, match="D = d_model = 6"):
        f(torch.randn(2, 5, dtype=F64))
