"""Kolmogorov–Arnold channel mixers: B-spline KAN (basis, per-edge equation, grid update) and
group-rational KAN of KAT (rational form, group sharing, fitted init, variance preservation)."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.kan import (
    GRKAN,
    KAN,
    GroupRational,
    GRKANLayer,
    KANLayer,
    b_spline_basis,
    fitted_rational,
    group_rational,
    kan_hidden,
    rational_second_moment,
    uniform_grid,
)
from layerlab.blocks.channels.mlp import MLP
from layerlab.errors import ConfigError, ShapeError

NAMES = ["kan", "grkan"]
LEADING = [(), (5,), (2, 3, 4)]
F64 = torch.float64


# ------------------------------------------------------------------ slow references (test-only)


def cox_de_boor(j: int, p: int, t: list[float], x: float) -> float:
    """B_{j,p}(x) on knots t, written like the math (0/0 := 0)."""
    if p == 0:
        return 1.0 if t[j] <= x < t[j + 1] else 0.0
    left = 0.0 if t[j + p] == t[j] else (x - t[j]) / (t[j + p] - t[j]) * cox_de_boor(j, p - 1, t, x)
    right = 0.0 if t[j + p + 1] == t[j + 1] else (
        (t[j + p + 1] - x) / (t[j + p + 1] - t[j + 1]) * cox_de_boor(j + 1, p - 1, t, x))
    return left + right


def silu(v: float) -> float:
    return v / (1.0 + math.exp(-v))


def random_grid(n_in: int, n_knots: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.sort(torch.rand(n_in, n_knots, generator=g, dtype=F64) * 6 - 3, dim=1).values


# ------------------------------------------------------------------ B-spline basis


@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_basis_partition_of_unity_nonnegative_and_support(kind):
    G, k = 5, 3
    grid = uniform_grid(3, G, k, (-2.0, 2.0), dtype=F64) if kind == "uniform" else random_grid(3, G + 2 * k + 1, 0)
    lo, hi = grid[:, k], grid[:, G + k]
    u = torch.linspace(0, 1, 4001, dtype=F64)[:, None]
    inside = lo + (hi - lo) * u  # (4001, 3), endpoints included
    basis = b_spline_basis(inside, grid, k)
    assert basis.shape == (4001, 3, G + k)
    torch.testing.assert_close(basis.sum(-1), torch.ones(4001, 3, dtype=F64), rtol=0, atol=1e-12)

    x = (grid[:, 0] - 1) + (grid[:, -1] - grid[:, 0] + 2) * torch.linspace(0, 1, 6001, dtype=F64)[:, None]
    basis = b_spline_basis(x, grid, k)
    assert basis.min() >= 0.0
    for m in range(G + k):  # B_m lives on the k + 1 intervals [t_m, t_{m+k+1})
        t0, t1 = grid[:, m], grid[:, m + k + 1]
        outside = (x < t0) | (x >= t1)
        interior = (x > t0) & (x < t1)
        assert torch.all(basis[..., m][outside] == 0)
        assert torch.all(basis[..., m][interior] > 0)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_basis_matches_scalar_cox_de_boor(k, kind):
    G = 4
    grid = uniform_grid(2, G, k, (-1.5, 2.0), dtype=F64) if kind == "uniform" else random_grid(2, G + 2 * k + 1, k)
    g = torch.Generator().manual_seed(10 + k)
    x = torch.rand(60, 2, generator=g, dtype=F64) * 8 - 4  # inside, in the extension and outside
    basis = b_spline_basis(x, grid, k)
    expected = torch.tensor([[[cox_de_boor(m, k, grid[i].tolist(), x[n, i].item()) for m in range(G + k)]
                              for i in range(2)] for n in range(60)], dtype=F64)
    torch.testing.assert_close(basis, expected, rtol=0, atol=1e-12)


def test_basis_repeated_knots_are_finite():
    grid = torch.tensor([[-2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0]], dtype=F64)  # a knot of multiplicity 3
    x = torch.linspace(-2.5, 3.5, 301, dtype=F64)[:, None]
    basis = b_spline_basis(x, grid, 2)
    expected = torch.tensor([[[cox_de_boor(m, 2, grid[0].tolist(), v)] for m in range(5)] for v in x[:, 0].tolist()],
                            dtype=F64).squeeze(-1).unsqueeze(1)
    assert torch.isfinite(basis).all()
    torch.testing.assert_close(basis, expected, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own jvp decompositions
def test_basis_derivatives_reverse_forward_and_second_order():
    """The custom derivative (formula, not the recursion's tape) against finite differences:
    reverse mode, forward mode (jvp) and reverse-over-reverse."""
    grid = random_grid(3, 10, 3)
    x = (torch.rand(4, 3, dtype=F64, generator=torch.Generator().manual_seed(3)) * 4 - 2).requires_grad_()
    for k in (1, 3):
        def fn(z, k=k):
            return b_spline_basis(z, grid, k)

        assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True)
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own jvp decompositions
def test_layer_works_under_torch_func():
    """jacrev (vmapped) and jacfwd agree with autograd: instruments may use torch.func."""
    torch.manual_seed(18)
    layer = KANLayer(3, 2, dtype=F64)
    _randomize(layer, 19)
    xs = torch.randn(5, 3, dtype=F64)
    expected = torch.stack([torch.autograd.functional.jacobian(layer, xi) for xi in xs])
    torch.testing.assert_close(torch.func.vmap(torch.func.jacrev(layer))(xs), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.func.vmap(torch.func.jacfwd(layer))(xs), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ KAN layer and block


def _randomize(layer: KANLayer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_layer_equals_per_edge_reference():
    layer = KANLayer(3, 2, grid_size=4, spline_order=3, grid_range=(-1.0, 1.5), bias=True, dtype=F64)
    _randomize(layer, 0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=g, dtype=F64) * 1.5
    y = layer(x)
    G, k = layer.grid_size, layer.spline_order
    wb, ws, c, b = layer.base_weight.tolist(), layer.spline_scale.tolist(), layer.spline_coef.tolist(), layer.bias.tolist()
    expected = torch.zeros(7, 2, dtype=F64)
    for n in range(7):
        for j in range(2):
            total = b[j]
            for i in range(3):  # φ_ij(x_i) = w_b silu(x_i) + w_s Σ_m c_m B_m(x_i)
                xi, knots = x[n, i].item(), layer.grid[i].tolist()
                spline = sum(c[j][i][m] * cox_de_boor(m, k, knots, xi) for m in range(G + k))
                total += wb[j][i] * silu(xi) + ws[j][i] * spline
            expected[n, j] = total
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)


def test_outside_the_grid_only_the_base_term_remains():
    layer = KANLayer(2, 3, dtype=F64)
    _randomize(layer, 2)
    x = torch.tensor([[50.0, -50.0], [1e4, -7.0]], dtype=F64)  # beyond the extended knots ±4.4
    y = layer(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, F.silu(x) @ layer.base_weight.T, rtol=1e-14, atol=0)


def _spline_part(layer: KANLayer, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nim,oim->noi", layer.basis(x), layer.spline_coef)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_update_grid_same_size_preserves_the_layer():
    """Quantile grid (grid_eps 0.02), same G = 5, O(1) random splines, 2000 samples U(-2, 2):
    measured rel. error 6.3e-3 on the spline part, 5.8e-3 on the output; asserted < 2e-2, < 1e-2."""
    torch.manual_seed(3)
    layer = KANLayer(4, 3, dtype=F64)
    torch.nn.init.normal_(layer.spline_coef)
    x = torch.rand(2000, 4, dtype=F64) * 4 - 2
    s0, y0 = _spline_part(layer, x), layer(x)
    coef = layer.spline_coef
    layer.update_grid(x)
    assert layer.spline_coef is coef and layer.grid.shape == (4, 12)  # updated in place
    assert _rel(_spline_part(layer, x), s0) < 2e-2
    assert _rel(layer(x), y0) < 1e-2
    # the inner knots moved to 0.98 quantile + 0.02 uniform, ends at the data's min and max
    q = torch.quantile(x, torch.linspace(0, 1, 6, dtype=F64), dim=0).T
    uniform = q[:, :1] + (q[:, -1:] - q[:, :1]) * torch.linspace(0, 1, 6, dtype=F64)
    torch.testing.assert_close(layer.grid[:, 3:9], 0.98 * q + 0.02 * uniform, rtol=0, atol=1e-12)


def test_grid_extension_5_to_10_preserves_the_layer():
    """G 5 -> 10 on the same samples: measured rel. error 1.3e-3 (spline part); asserted < 5e-3."""
    torch.manual_seed(4)
    layer = KANLayer(4, 3, dtype=F64)
    torch.nn.init.normal_(layer.spline_coef)
    x = torch.rand(2000, 4, dtype=F64) * 4 - 2
    s0 = _spline_part(layer, x)
    layer.update_grid(x, grid_size=10)
    assert layer.grid_size == 10 and layer.spline_coef.shape == (3, 4, 13) and layer.grid.shape == (4, 17)
    assert _rel(_spline_part(layer, x), s0) < 5e-3
    fresh = KANLayer(4, 3, dtype=F64)  # a G = 5 layer takes the extended state's size on load
    fresh.load_state_dict(layer.state_dict())
    assert fresh.grid_size == 10 and torch.equal(fresh(x), layer(x))


def test_block_update_grid_with_extension():
    """Whole block at its init, N(0, 1) samples, G 5 -> 20 on uniform data-range grids
    (grid_eps = 1): measured rel. output error 1.5e-3; asserted < 5e-3."""
    torch.manual_seed(5)
    block = KAN(16, dtype=F64)
    x = torch.randn(2000, 16, dtype=F64)
    y0 = block(x)
    block.update_grid(x, grid_size=20, grid_eps=1.0)
    assert block.layer1.grid_size == block.layer2.grid_size == 20
    assert _rel(block(x), y0) < 5e-3
    with pytest.raises(ShapeError, match="at least"):
        block.update_grid(x[:10], grid_size=20)


def test_kan_gradcheck():
    torch.manual_seed(6)
    block = KAN(3, hidden=2, grid_size=3, spline_order=2, bias=True, dtype=F64)
    for layer in (block.layer1, block.layer2):
        _randomize(layer, 7)
    x = (torch.randn(4, 3, dtype=F64) * 1.5).requires_grad_()
    assert torch.autograd.gradcheck(block, (x,))


@pytest.mark.parametrize("d", [8, 16, 32, 64, 128])
def test_kan_parameter_count(d):
    G, k = 5, 3
    block = KAN(d)
    h = block.hidden
    assert h == kan_hidden(d) == max(1, 4 * d // (G + k + 2))
    n = sum(p.numel() for p in block.parameters())
    assert n == 2 * d * h * (G + k + 2)  # per edge: G + k spline coefficients, w_b, w_s
    assert 0.75 * 8 * d * d <= n <= 8 * d * d  # the bias-free expansion-4 MLP's 8 d^2, or a little less
    n_bias = sum(p.numel() for p in KAN(d, hidden=7, grid_size=8, spline_order=2, bias=True).parameters())
    assert n_bias == 2 * d * 7 * (8 + 2 + 2) + 7 + d


def test_kan_init_statistics():
    """Paper Sec. 2.2: w_s = 1, spline coefficients N(0, 0.1^2), w_b Xavier uniform."""
    torch.manual_seed(8)
    layer = KAN(128).layer1  # 128 -> 51: 52224 coefficients, SE of the std ~0.3%
    assert torch.equal(layer.spline_scale, torch.ones_like(layer.spline_scale))
    assert abs(layer.spline_coef.std().item() / 0.1 - 1) < 0.02
    assert abs(layer.spline_coef.mean().item()) < 0.003
    bound = math.sqrt(6 / (128 + 51))
    assert layer.base_weight.abs().max() <= bound
    assert abs(layer.base_weight.std().item() * math.sqrt(3) / bound - 1) < 0.03


# ------------------------------------------------------------------ group-rational KAN


def test_rational_closed_form_by_hand():
    # group 0: P = 1 + 2x, Q = x;  group 1: P = x^2, Q = -x^2 (the |.| matters)
    a = torch.tensor([[1.0, 2, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]], dtype=F64)
    b = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0]], dtype=F64)
    x = torch.tensor([[1.0, -2.0, 2.0, -1.0], [0.0, 3.0, 0.5, 4.0]], dtype=F64)  # channels 0,1 | 2,3
    expected = torch.tensor([
        [3 / 2, -3 / 3, 4 / 5, 1 / 2],  # (1+2)/(1+1), (1-4)/(1+2), 4/(1+4), 1/(1+1)
        [1 / 1, 7 / 4, 0.25 / 1.25, 16 / 17],  # 1/1, (1+6)/(1+3), .25/(1+.25), 16/(1+16)
    ], dtype=F64)
    torch.testing.assert_close(group_rational(x, a, b), expected, rtol=1e-15, atol=1e-15)


def test_group_sharing():
    torch.manual_seed(9)
    act = GroupRational(12, groups=3, dtype=F64)
    with torch.no_grad():
        act.numerator.normal_()
        act.denominator.normal_()
    v = torch.linspace(-2, 2, 9, dtype=F64)[:, None]
    y = act(v.expand(-1, 12)).reshape(9, 3, 4)  # every channel gets the same value
    assert torch.equal(y, y[..., :1].expand_as(y))  # identical within a group
    assert (y[:, 0] - y[:, 1]).abs().max() > 1e-3 and (y[:, 1] - y[:, 2]).abs().max() > 1e-3


def test_vectorized_rational_equals_per_group_reference():
    torch.manual_seed(10)
    act = GroupRational(6, groups=3, m=4, n=3, dtype=F64)
    with torch.no_grad():
        act.numerator.normal_()
        act.denominator.normal_()
    x = torch.randn(5, 6, dtype=F64) * 2
    a, b = act.numerator.tolist(), act.denominator.tolist()
    expected = torch.zeros_like(x)
    for n in range(5):
        for c in range(6):
            g, v = c // 2, x[n, c].item()
            p = sum(a[g][i] * v**i for i in range(5))
            q = sum(b[g][i - 1] * v**i for i in range(1, 4))
            expected[n, c] = p / (1 + abs(q))
    torch.testing.assert_close(act(x), expected, rtol=1e-12, atol=1e-12)


def test_identity_init_reproduces_x():
    """F_1 = x(1 + 0.01 x^4) / (1 + 0.01 x^4): the identity to rounding on [-3, 3] (asserted 1e-12),
    with a denominator that is not zero (so it trains)."""
    act = GroupRational(8, groups=2, dtype=F64)
    x = torch.linspace(-3, 3, 601, dtype=F64)[:, None].expand(-1, 8)
    torch.testing.assert_close(act(x), x, rtol=0, atol=1e-12)
    assert act.denominator.abs().sum() > 0
    x = x.clone().requires_grad_()
    act(x).sum().backward()
    assert act.denominator.grad.abs().min() > 0  # every b_k receives gradient


@pytest.mark.parametrize("target, fn, tol", [("gelu", F.gelu, 5e-3), ("swish", F.silu, 2e-4)])
def test_fitted_activation_init(target, fn, tol):
    """Fitted on [-6, 6]: measured max error on [-3, 3] 3.7e-3 (GELU), 7e-5 (Swish)."""
    a, b = fitted_rational(target)
    assert len(a) == 6 and len(b) == 4  # m = 5, n = 4
    at, bt = torch.tensor([a], dtype=F64), torch.tensor([b], dtype=F64)
    x = torch.linspace(-3, 3, 6001, dtype=F64)[:, None]
    assert (group_rational(x, at, bt) - fn(x)).abs().max() < tol
    tails = torch.cat([torch.linspace(-100, -3, 2000), torch.linspace(3, 100, 2000)]).to(F64)[:, None]
    assert (group_rational(tails, at, bt).abs() <= 1.01 * tails.abs()).all()  # no blow-up outside the fit
    # E[F(x)^2] under N(0, 1) by quadrature vs Monte Carlo (SE ~0.3%)
    z = torch.randn(400_000, 1, dtype=F64, generator=torch.Generator().manual_seed(11))
    mc = group_rational(z, at, bt).pow(2).mean().item()
    assert abs(rational_second_moment(a, b) / mc - 1) < 0.02


def test_grkan_layer_structure_at_init():
    """GRKAN(x) = W_2 F_2(W_1 F_1(x) + b_1) + b_2 with F_1 = id, F_2 ≈ GELU: close to an MLP."""
    torch.manual_seed(12)
    block = GRKAN(16, dtype=F64)
    x = torch.randn(32, 16, dtype=F64)
    l1, l2 = block.layer1.linear, block.layer2.linear
    mlp_like = F.gelu(x @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    exact = l2(group_rational(l1(x), block.layer2.rational.numerator, block.layer2.rational.denominator))
    torch.testing.assert_close(block(x), exact, rtol=1e-12, atol=1e-12)
    assert _rel(block(x), mlp_like) < 2e-2


def test_variance_preserving_init():
    """Var[W F(x)] = fan_in Var[w] E[F(x)^2] = Var[x] (KAT). Through 3 blocks (6 GR-KAN layers,
    no residuals) at width 128: the output/input variance ratio, averaged over 6 independent
    stacks, within 10% of 1 (measured 0.99 +- 0.09 per stack at width 256); each stack within
    [0.67, 1.5] (a fan-in-only init of the GELU layers would give ~0.425^3 = 0.08)."""
    torch.manual_seed(13)
    ratios = []
    with torch.no_grad():
        for _ in range(6):
            x = torch.randn(1024, 128)
            h = x
            for _ in range(3):
                h = GRKAN(128)(h)
            ratios.append(h.var().item() / x.var().item())
    assert abs(sum(ratios) / len(ratios) - 1) < 0.1
    assert all(0.67 < r < 1.5 for r in ratios)
    block = GRKAN(128)
    for layer, init in ((block.layer1, "identity"), (block.layer2, "gelu")):
        a, b = fitted_rational(init)
        fan_in = layer.linear.in_features
        expected = 1 / math.sqrt(fan_in * rational_second_moment(a, b))
        assert abs(layer.linear.weight.std().item() / expected - 1) < 0.03
        assert torch.count_nonzero(layer.linear.bias) == 0


def test_grkan_gradcheck():
    torch.manual_seed(14)
    block = GRKAN(4, groups=2, hidden=4, dtype=F64)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))  # Q with sign changes, O(1) weights
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_grkan_parameter_count_and_width_multiple():
    for d in (16, 64):
        n = sum(p.numel() for p in GRKAN(d).parameters())
        assert n == sum(p.numel() for p in MLP(d).parameters()) + 2 * 8 * (5 + 4 + 1)
    assert GRKAN(24, groups=8, expansion=3.1).hidden == 80  # round(74.4) = 74 -> multiple of 8
    assert layerlab.registry.get("channel", "grkan").width_multiple({"groups": 6}) == 6
    assert layerlab.registry.get("channel", "grkan").width_multiple({}) == 8
    with pytest.raises(ConfigError, match="multiple of groups"):
        GRKAN(20, groups=8)
    with pytest.raises(ConfigError, match="multiple of groups"):
        GRKAN(16, groups=8, hidden=20)
    with pytest.raises(ConfigError, match="activation"):
        GRKAN(16, activation="tanh")
    with pytest.raises(ConfigError, match="degrees"):
        GRKAN(16, n=0)


# ------------------------------------------------------------------ contract (both blocks)


@pytest.mark.parametrize("lead", LEADING, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_shape_over_leading_dims(name, lead):
    torch.manual_seed(15)
    block = layerlab.build("channel", name, 8)
    x = torch.randn(*lead, 8)
    y = block(x)
    assert y.shape == x.shape
    if lead:
        torch.testing.assert_close(y, block(x.reshape(-1, 8)).reshape(x.shape))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_dtype_preserved(name, dtype):
    torch.manual_seed(16)
    block = layerlab.build("channel", name, 8, dtype=dtype)
    assert all(p.dtype == dtype for p in block.parameters())
    x = torch.randn(3, 8, dtype=dtype)
    y = block(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.float().sum().backward()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    torch.manual_seed(17)
    a, b = layerlab.build("channel", name, 16), layerlab.build("channel", name, 16)
    x = torch.randn(3, 16)
    if name == "kan":
        assert not torch.equal(a(x), b(x))
    else:  # GR-KAN's rationals start identical: perturb to make the round trip meaningful
        with torch.no_grad():
            for p in a.parameters():
                p.add_(0.1 * torch.randn_like(p))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_width_is_a_shape_error(name):
    block = layerlab.build("channel", name, 8)
    with pytest.raises(ShapeError, match="D = d_model = 8"):
        block(torch.randn(3, 7))


def test_kan_bad_options():
    for bad in ({"grid_size": 0}, {"spline_order": -1}, {"grid_range": (1.0, -1.0)}, {"grid_range": (0, math.inf)},
                {"hidden": 0}, {"dropout": 1.0}):
        with pytest.raises(ConfigError):
            KAN(8, **bad)
    with pytest.raises(ConfigError, match="grid_eps"):
        KAN(8).update_grid(torch.randn(50, 8), grid_eps=1.5)
    with pytest.raises(ConfigError, match="unknown option"):
        layerlab.build("channel", "kan", 8, grid=5)


def test_grkan_layer_options():
    with pytest.raises(ConfigError, match="init"):
        GroupRational(8, init="relu")
    layer = GRKANLayer(8, 4, groups=4, init="swish", bias=False)
    assert layer.linear.bias is None and layer.rational.numerator.shape == (4, 6)
