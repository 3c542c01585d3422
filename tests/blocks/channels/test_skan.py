"""S-KAN (arXiv:2408.08338): each space's basis against its definition, reference vs fast form,
one-hot selection weights give the single-space KAN, select(k) keeps the largest |alpha| per node,
active parameter counts, width default and strict options. The channel contract covers the rest."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.kan import b_spline_basis_reference, uniform_grid
from layerlab.blocks.channels.skan import SKAN, SPACES, SKANLayer
from layerlab.errors import ConfigError

F64 = torch.float64


def layer(in_f=3, out_f=4, seed=0, **kw):
    torch.manual_seed(seed)
    return SKANLayer(in_f, out_f, dtype=F64, **kw)


def test_space_features_match_their_definitions():
    lay = layer(degree=5, frequencies=2, rbf_centers=5)
    x = 1.5 * torch.randn(7, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    feats = dict(zip(lay.spaces, lay.space_features(x)))
    grid = uniform_grid(3, 5, 3, (-2.0, 2.0), dtype=F64)
    torch.testing.assert_close(feats["bspline"], b_spline_basis_reference(x, grid, 3), rtol=1e-12, atol=1e-14)
    theta = torch.arccos(torch.tanh(x))  # T_n(cos theta) = cos(n theta)
    cheb = torch.stack([torch.cos(n * theta) for n in range(6)], -1)
    torch.testing.assert_close(feats["chebyshev"], cheb, rtol=1e-10, atol=1e-12)
    four = torch.stack([torch.sin(x), torch.sin(2 * x), torch.cos(x), torch.cos(2 * x)], -1)
    torch.testing.assert_close(feats["fourier"], four, rtol=1e-12, atol=1e-14)
    mu = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=F64)
    torch.testing.assert_close(feats["rbf"], torch.exp(-((x[..., None] - mu) / 1.0) ** 2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(feats["silu"][..., 0], F.silu(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-4)])
def test_reference_equals_fast_outputs_and_gradients(dtype, tol):
    torch.manual_seed(2)
    block = SKAN(8, hidden=5, dtype=dtype)
    with torch.no_grad():
        block.layer1.alpha.normal_()
        block.layer2.alpha.normal_()
    x = torch.randn(2, 6, 8, dtype=dtype, requires_grad=True)
    outs, grads = [], []
    for mode in ("fast", "reference"):
        block.zero_grad()
        x.grad = None
        y = block(x, mode)
        (y * torch.linspace(-1, 1, 8, dtype=dtype)).sum().backward()
        outs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(outs[0], outs[1]) <= tol
    assert all(rel(a, b) <= tol for a, b in zip(grads[0], grads[1]))


def test_one_hot_alpha_is_the_single_space_kan():
    lay = layer()
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    for s, space in enumerate(SPACES):
        single = layer(spaces=(space,), seed=9)
        with torch.no_grad():
            lay.alpha.zero_()
            lay.alpha[:, s] = 1.0
            single.alpha.fill_(1.0)
            single.coef[0].copy_(lay.coef[s])
            single.bias.copy_(lay.bias.normal_())
        torch.testing.assert_close(lay(x), single(x), rtol=1e-12, atol=1e-14)
    silu_only = layer(spaces=("silu",))  # one SiLU function per edge: a dense layer after SiLU
    expect = F.linear(F.silu(x), silu_only.alpha * silu_only.coef[0][..., 0], silu_only.bias)
    torch.testing.assert_close(silu_only(x), expect, rtol=1e-12, atol=1e-14)


def test_select_keeps_the_largest_weights_per_node_and_counts_parameters():
    lay = layer(in_f=3, out_f=4)
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        lay.alpha.copy_(torch.tensor([[0.1, -3.0, 0.2, 0.0, 0.5], [2.0, 0.1, 0.1, 0.1, 0.1],
                                      [0.0, 0.0, 0.0, -0.4, 0.3], [0.3, 0.2, 0.1, 0.0, 1.0]], dtype=F64))
    full = lay.active_parameters()
    assert full == sum(p.numel() for p in lay.parameters())
    lay.select(1)
    assert lay.active.long().argmax(1).tolist() == [1, 0, 3, 4] and lay.active.sum() == 4
    feats = lay.space_features(x)
    expect = torch.stack([sum(lay.alpha[j, s] * torch.einsum("nim,im->n", feats[s], lay.coef[s][j])
                              for s in range(5) if lay.active[j, s]) for j in range(4)], -1) + lay.bias
    torch.testing.assert_close(lay(x), expect, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lay(x, "reference"), expect, rtol=1e-12, atol=1e-14)
    sizes = dict(zip(SPACES, lay.sizes))
    assert lay.active_parameters() == sum(3 * sizes[s] + 1 for s in ("chebyshev", "bspline", "rbf", "silu")) + 4
    lay.select(2)
    assert (lay.active.sum(1) == 2).all() and lay.active[0, 1] and lay.active[0, 4]


def test_default_width_stays_within_the_mlp_budget():
    for d in (16, 32, 64):
        block = layerlab.build("channel", "skan", d)
        weights = sum(c.numel() for lay in (block.layer1, block.layer2) for c in lay.coef)
        assert weights <= 8 * d * d and block.hidden == max(1, 4 * d // (sum(block.layer1.sizes) + 1))


def test_bad_options():
    for kw, match in (({"spaces": ("bspline", "wavelet")}, "spaces"), ({"spaces": ()}, "spaces"),
                      ({"spaces": ("rbf", "rbf")}, "distinct"), ({"degree": -1}, "degree"),
                      ({"rbf_centers": 1}, "rbf_centers"), ({"grid_range": (1.0, -1.0)}, "grid_range"),
                      ({"hidden": 0}, "hidden")):
        with pytest.raises(ConfigError, match=match):
            SKAN(8, **kw)
    with pytest.raises(ConfigError, match="exceeds"):
        layer().select(6)
    with pytest.raises(ConfigError, match="mode"):
        layer()(torch.zeros(1, 3, dtype=F64), mode="slow")
    assert math.isfinite(layer()(torch.zeros(1, 3, dtype=F64)).sum().item())
