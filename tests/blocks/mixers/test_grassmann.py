"""Causal Grassmann mixing (arXiv:2512.19428): Plücker coordinates of known planes, basis
invariance, the Plücker relation, forms agree, step = forward, causality, locality, options."""
import pytest
import torch

import layerlab
from layerlab.blocks.mixers.grassmann import CausalGrassmann, plucker
from layerlab.errors import ConfigError, ShapeError

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

f64 = torch.float64


# --- Plücker coordinates ------------------------------------------------------------------
def test_plucker_hand_computed():
    """a = (1, 2, 0), b = (0, 1, 3): p12 = 1·1 - 2·0 = 1, p13 = 1·3 - 0·0 = 3, p23 = 2·3 - 0·1 = 6."""
    a = torch.tensor([1.0, 2.0, 0.0], dtype=f64)
    b = torch.tensor([0.0, 1.0, 3.0], dtype=f64)
    assert plucker(a, b).tolist() == [1.0, 3.0, 6.0]
    assert plucker(b, a).tolist() == [-1.0, -3.0, -6.0]  # antisymmetric
    # the coordinate plane e2 ∧ e4 in R^4: only p24 (index 4 in 12,13,14,23,24,34) is non-zero
    e = torch.eye(4, dtype=f64)
    assert plucker(e[1], e[3]).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert plucker(e[1], 2 * e[1]).abs().sum() == 0  # a degenerate pair spans no plane


def test_plucker_basis_change_scales_by_determinant():
    """[a' b'] = [a b] G  =>  p' = det(G) p, so the normalized vector changes only by sign(det G)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 6, 7, generator=g, dtype=f64)
    for _ in range(5):
        G = torch.randn(2, 2, generator=g, dtype=f64)
        a2 = G[0, 0] * a + G[1, 0] * b
        b2 = G[0, 1] * a + G[1, 1] * b
        p, p2 = plucker(a, b), plucker(a2, b2)
        assert rel_err(p2, torch.linalg.det(G) * p) <= 1e-12
        unit, unit2 = p / p.norm(dim=-1, keepdim=True), p2 / p2.norm(dim=-1, keepdim=True)
        assert rel_err(unit2, torch.sign(torch.linalg.det(G)) * unit) <= 1e-12


def test_plucker_norm_is_parallelogram_area_and_relation_holds():
    """Lagrange: ||p||² = ||a||²||b||² - (a·b)²; in R^4 the Plücker relation
    p12 p34 - p13 p24 + p14 p23 = 0 holds (the vector is decomposable)."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 10, 4, generator=g, dtype=f64)
    p = plucker(a, b)
    area2 = a.square().sum(-1) * b.square().sum(-1) - (a * b).sum(-1) ** 2
    assert rel_err(p.square().sum(-1), area2) <= 1e-12
    p12, p13, p14, p23, p24, p34 = p.unbind(-1)
    assert (p12 * p34 - p13 * p24 + p14 * p23).abs().max() < 1e-12
    with pytest.raises(ShapeError):
        plucker(torch.randn(3), torch.randn(4))


# --- the mixer ------------------------------------------------------------------------------
def make(dtype=f64, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("r", 6)
    kw.setdefault("windows", (1, 2, 4, 8, 12, 16))
    return CausalGrassmann(12, dtype=dtype, **kw)


@pytest.mark.parametrize("dtype", [f64, torch.float32])
@pytest.mark.parametrize("normalize", [True, False])
def test_forms_agree(normalize, dtype):
    block = make(dtype, normalize=normalize)
    for i, (B, L) in enumerate(SHAPES):
        check_forms_agree(block, B, L, seed=i)


@pytest.mark.parametrize("windows", [(1, 2, 4, 8, 12, 16), (3,), (1, 5)])
def test_step_matches_forward_causal_state_size(windows):
    block = make(windows=windows)
    for B, L in [(1, 1), (2, 9), (2, 33)]:
        check_step_matches_forward(block, B, L, tol=1e-10)
    check_causal(block, L=20)
    check_state_size(block)
    assert block.state_size == max(windows) * (6 + 1)  # the last max(δ) z's and their flags


def test_output_sees_exactly_the_offsets():
    """y_t depends on x_{t-δ} for δ in windows (and x_t), on nothing else."""
    block = make(windows=(1, 3))
    x = torch.randn(1, 10, 12, dtype=f64)
    y = block(x)
    for mode in block.modes:
        for s in range(10):
            x2 = x.clone()
            x2[:, s] += 1.0
            changed = not torch.allclose(block(x2, mode=mode)[:, 9], y[:, 9])
            assert changed == (s in (6, 8, 9)), (mode, s)


def test_pair_plane_invariance_inside_the_layer():
    """With normalize, the features of a pair depend on the plane span(z_t, z_{t-δ}) up to sign:
    replacing z_{t-δ} by z_{t-δ} + c z_t (same plane, same orientation) leaves g_t unchanged."""
    block = make(windows=(1,), r=5)
    z = torch.randn(3, 5, dtype=f64)
    p = block._encode(z[1], z[0])
    assert rel_err(block._encode(z[1], z[0] + 2.5 * z[1]), p) <= 1e-12
    assert rel_err(block._encode(3.0 * z[1], 0.5 * z[0]), p) <= 1e-12
    assert rel_err(block._encode(z[0], z[1]), -p) <= 1e-12
    assert abs(p.norm().item() - 1) < 1e-12


def test_first_position_has_no_pairs_and_gate_blends():
    """t = 0 has no t - δ >= 0: g_0 = 0 and y_0 = α_0 ⊙ h_0."""
    block = make()
    x = torch.randn(2, 5, 12, dtype=f64)
    alpha0 = torch.sigmoid(block.w_gate(torch.cat((x[:, 0], torch.zeros_like(x[:, 0])), dim=-1)))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode)[:, 0], alpha0 * x[:, 0]) <= 1e-12


@pytest.mark.parametrize("mode", CausalGrassmann.modes)
def test_gradcheck(mode):
    torch.manual_seed(2)
    block = CausalGrassmann(4, r=3, windows=(1, 2), dtype=f64)
    x = torch.randn(2, 5, 4, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", CausalGrassmann.modes)
def test_dtype_and_shape(dtype, mode):
    block = make(dtype)
    y = block(torch.randn(2, 7, 12, dtype=dtype), mode=mode)
    assert y.dtype == dtype and y.shape == (2, 7, 12)
    with pytest.raises(ShapeError):
        block(torch.randn(2, 7, 5, dtype=dtype))


def test_defaults_and_registry():
    block = layerlab.build("mixer", "grassmann", 32)
    assert block.r == 16 and block.windows == (1, 2, 4, 8, 12, 16) and block.n_plucker == 120
    assert block.w_plu.in_features == 120 and block.w_gate.in_features == 64
    entry = layerlab.registry.get("mixer", "grassmann")
    assert entry.paper.arxiv == "2512.19428" and entry.paper.year == 2025


@pytest.mark.parametrize("options, words", [
    ({"r": 1}, "r must be >= 2"),
    ({"windows": ()}, "windows"),
    ({"windows": (0, 1)}, "windows"),
    ({"windows": (2, 2)}, "windows"),
    ({"eps": 0.0}, "eps"),
    ({"rank": 4}, "unknown option"),
])
def test_bad_options(options, words):
    with pytest.raises(ConfigError, match=words):
        layerlab.build("mixer", "grassmann", 16, **options)
