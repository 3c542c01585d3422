"""B-spline KAN: the basis (against a scalar Cox–de Boor, partition of unity on the closed
interval, derivatives), the fast form against the plain one (autograd through the recursion, the
per-edge sum), grid update, initialization and parameter count. Shapes, dtypes, gradcheck,
state_dict and bfloat16 buffers: the channel contract (tests/blocks/test_channel_contract.py)."""
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from layerlab.blocks.channels.kan import (
    KAN,
    KANLayer,
    b_spline_basis,
    b_spline_basis_reference,
    kan_hidden,
    uniform_grid,
)
from layerlab.errors import ConfigError, ShapeError

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


@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_partition_of_unity_on_the_closed_interval_including_hi(k, kind):
    """On [t_k, t_{G+k}], both ends included, the basis sums to 1; for k = 0 the right end
    x = hi belongs to the last interval (the half-open B_{j,0} alone would give 0 there)."""
    G = 4
    grid = uniform_grid(2, G, k, (-1.0, 1.5), dtype=F64) if kind == "uniform" else random_grid(2, G + 2 * k + 1, 7)
    lo, hi = grid[:, k], grid[:, G + k]
    x = torch.stack([lo, hi, 0.5 * (lo + hi)])  # (3, 2): lo, hi and an interior point
    basis = b_spline_basis(x, grid, k)
    torch.testing.assert_close(basis.sum(-1), torch.ones(3, 2, dtype=F64), rtol=0, atol=1e-12)
    if k == 0:
        assert torch.equal(basis[1, :, -1], torch.ones(2, dtype=F64))  # hi: the last B_{G-1,0}
        beyond = b_spline_basis(hi + 1e-9, grid, 0)
        assert torch.equal(beyond, torch.zeros_like(beyond))  # and nothing past it


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


def test_kan_bad_options():
    for bad in ({"grid_size": 0}, {"spline_order": -1}, {"grid_range": (1.0, -1.0)}, {"grid_range": (0, math.inf)},
                {"hidden": 0}, {"dropout": 1.0}):
        with pytest.raises(ConfigError):
            KAN(8, **bad)
    with pytest.raises(ConfigError, match="grid_eps"):
        KAN(8).update_grid(torch.randn(50, 8), grid_eps=1.5)
    with pytest.raises(ConfigError, match="mode"):
        KAN(8)(torch.randn(2, 8), mode="slow")


# ------------------------------------------------------------------ fast form vs plain form


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["uniform", "nonuniform", "repeated"])
def test_fast_basis_equals_autograd_through_the_recursion(k, kind):
    """The tape-free basis with its derivative formula against the recursion under autograd:
    values, first and second derivatives in float64 to 1e-10 (inside, in the extension, outside)."""
    G = 4
    if kind == "uniform":
        grid = uniform_grid(3, G, k, (-1.5, 2.0), dtype=F64)
    elif kind == "nonuniform":
        grid = random_grid(3, G + 2 * k + 1, 20 + k)
    else:  # a knot of multiplicity 2 inside
        grid = random_grid(3, G + 2 * k + 1, 30 + k)
        grid[:, G // 2 + k] = grid[:, G // 2 + k - 1]
    gen = torch.Generator().manual_seed(40 + k)
    x = (torch.rand(50, 3, generator=gen, dtype=F64) * 9 - 4.5).requires_grad_()
    w = torch.randn(50, 3, G + k, generator=gen, dtype=F64)
    fast, ref = b_spline_basis(x, grid, k), b_spline_basis(x, grid, k, mode="reference")
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ref, b_spline_basis_reference(x, grid, k), rtol=0, atol=0)
    if k == 0:  # piecewise constant: no gradient reaches x (or a zero one)
        for basis in (fast, ref):
            if basis.requires_grad:
                (g,) = torch.autograd.grad((basis * w).sum(), x, allow_unused=True)
                assert g is None or torch.equal(g, torch.zeros_like(x))
        return
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x, create_graph=True)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-10)
    assert g_ref.abs().max() > 0.1  # the derivatives are not trivially zero
    if k >= 2:  # second derivatives (k = 1 is piecewise linear: zero, and no graph)
        (h_fast,) = torch.autograd.grad(g_fast.sum(), x)
        (h_ref,) = torch.autograd.grad(g_ref.sum(), x)
        torch.testing.assert_close(h_fast, h_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("spline_order", [0, 1, 3])
def test_kan_fast_form_equals_reference_form(spline_order, dtype, tol):
    """The block: fused basis features and one matrix product against the per-edge sum over the
    recursion's basis; outputs and gradients (input and every parameter)."""
    torch.manual_seed(50)
    block = KAN(6, hidden=5, grid_size=4, spline_order=spline_order, bias=True, dtype=dtype)
    for layer in (block.layer1, block.layer2):
        _randomize(layer, 51)
    x = (torch.randn(4, 3, 6, dtype=dtype) * 1.5).requires_grad_()
    params = list(block.parameters())
    outs, grads = [], []
    for mode in ("fast", "reference"):
        y = block(x, mode=mode)
        outs.append(y)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, 6, dtype=dtype)).sum(), [x, *params]))
    torch.testing.assert_close(outs[0], outs[1], rtol=tol, atol=tol)
    for g_fast, g_ref in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)


# ------------------------------------------------------------------ uniform knots: closed form and fused kernel

from layerlab.blocks.channels import kan as kan_module  # noqa: E402
from layerlab.kernels import bspline as bspline_kernel  # noqa: E402
from tests.conftest import skip_without_compiler  # noqa: E402

COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(params=["fused", "torch"])
def uniform_form(request, monkeypatch):
    """The closed form on uniform knots by the C++ kernel, or by PyTorch ops (LAYERLAB_NO_EXTENSIONS=1)."""
    if request.param == "fused":
        monkeypatch.delenv(bspline_kernel.NO_EXTENSIONS_ENV, raising=False)
        skip_without_compiler("the B-spline kernel")
        assert bspline_kernel.extension() is not None, "a C++ compiler is present but the B-spline kernel did not build"
    else:
        monkeypatch.setenv(bspline_kernel.NO_EXTENSIONS_ENV, "1")
        assert bspline_kernel.extension() is None
    return request.param


def _uniform_points(grid: torch.Tensor, k: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """(n, in): every knot exactly, random points inside, in the extension and beyond, and far out."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = grid[:, 0], grid[:, -1]
    rand = lo - 1.5 + (hi - lo + 3.0) * torch.rand(80, grid.shape[0], generator=g, dtype=F64)
    far = torch.tensor([[-50.0], [50.0]], dtype=F64).expand(2, grid.shape[0])
    return torch.cat([grid.T, rand, far]).to(dtype)


def test_piece_coefficients_are_the_cardinal_b_spline():
    """Cubic pieces on [0, 1): s^3/6, (-3s^3+3s^2+3s+1)/6, (3s^3-6s^2+4)/6, (1-s)^3/6; every
    order: the pieces sum to 1 and match the scalar Cox–de Boor on integer knots."""
    s = torch.linspace(0, 1, 11, dtype=F64)[:-1]
    cubic = torch.stack([s**3, -3 * s**3 + 3 * s**2 + 3 * s + 1, 3 * s**3 - 6 * s**2 + 4, (1 - s) ** 3], -1) / 6
    m = torch.tensor(kan_module._piece_coefficients(3), dtype=F64)
    torch.testing.assert_close(torch.linalg.vander(s, N=4) @ m, cubic, rtol=0, atol=1e-15)
    for k in kan_module.UNIFORM_ORDERS:
        m = torch.tensor(kan_module._piece_coefficients(k), dtype=F64)
        pieces = torch.linalg.vander(s, N=k + 1) @ m  # (s, r): B_{i-r} on interval i
        torch.testing.assert_close(pieces.sum(-1), torch.ones_like(s), rtol=0, atol=1e-13)
        knots = [float(j) for j in range(k + 2)]  # B_{0,k} on 0..k+1; piece r is B_0 at t = r + s
        expected = torch.tensor([[cox_de_boor(0, k, knots, r + v) for r in range(k + 1)] for v in s.tolist()], dtype=F64)
        torch.testing.assert_close(pieces, expected, rtol=0, atol=1e-13)


def test_uniform_spacing_detects_uniform_grids_only():
    grid = uniform_grid(3, 5, 3, (-2.0, 2.0), dtype=torch.float32)
    inv_h = kan_module.uniform_inv_spacing(grid)
    torch.testing.assert_close(inv_h, torch.full((3,), 1.25), rtol=1e-6, atol=0)
    bent = uniform_grid(3, 5, 3, (-2.0, 2.0), dtype=F64)
    bent[1, 4] += 1e-9  # one knot of one input off the uniform grid
    assert kan_module.uniform_inv_spacing(bent) is None
    assert kan_module.uniform_inv_spacing(random_grid(2, 12, 0)) is None


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_uniform_basis_equals_the_recursion(k, dtype, tol, uniform_form):
    """Closed form (fused kernel or PyTorch ops) against autograd through the Cox–de Boor
    recursion: values, first derivatives and (k >= 3) second derivatives; on every knot,
    inside, in the extension, outside and far out."""
    grid = uniform_grid(3, 4, k, (-1.5, 2.0), dtype=dtype)
    x = _uniform_points(grid, k, dtype, 60 + k).requires_grad_()
    w = torch.randn(*x.shape, 4 + k, generator=torch.Generator().manual_seed(k), dtype=dtype)
    fast = b_spline_basis(x, grid, k)
    ref = b_spline_basis_reference(x, grid, k)
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol)
    assert ref.abs().max() > 0.5 and (ref[:-2 * 1] != 0).any()
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x, create_graph=True)
    torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)
    assert g_ref.abs().max() > 0.1
    assert torch.equal(g_fast[-2:], torch.zeros_like(g_fast[-2:]))  # far out: no spline left
    if k >= 3:  # second derivatives are continuous at the knots from k = 3 on
        (h_fast,) = torch.autograd.grad(g_fast.sum(), x)
        (h_ref,) = torch.autograd.grad(g_ref.sum(), x)
        torch.testing.assert_close(h_fast, h_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_uniform_features_equal_silu_and_the_recursion(k, dtype, tol, uniform_form):
    """The fused feature vector [silu(x_i), B_0(x_i), ...] against its parts computed plainly."""
    layer = KANLayer(4, 3, grid_size=5, spline_order=k, dtype=dtype)
    x = _uniform_points(layer.grid, k, dtype, 70 + k).reshape(2, -1, 4).requires_grad_()
    feats = layer.features(x)
    basis = b_spline_basis_reference(x, layer.grid, k)
    expected = torch.cat([F.silu(x).unsqueeze(-1), basis], -1).flatten(-2)
    torch.testing.assert_close(feats, expected, rtol=tol, atol=tol)
    w = torch.randn(feats.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (g_fast,) = torch.autograd.grad((feats * w).sum(), x)
    (g_ref,) = torch.autograd.grad((expected * w).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("spline_order", [2, 3, 4])
def test_kan_uniform_fast_form_equals_reference_form(spline_order, dtype, tol, uniform_form):
    """The block on its (uniform) default grid, fused kernel and PyTorch closed form, against the
    per-edge sum over the recursion: outputs and gradients (input and every parameter)."""
    torch.manual_seed(52)
    block = KAN(6, hidden=5, grid_size=5, spline_order=spline_order, bias=True, dtype=dtype)
    for layer in (block.layer1, block.layer2):
        _randomize(layer, 53)
    x = torch.randn(4, 3, 6, dtype=dtype) * 2.5
    x[0, 0] = block.layer1.grid[:, 4]  # inputs exactly on a knot
    x = x.requires_grad_()
    params = list(block.parameters())
    outs, grads = [], []
    for mode in ("fast", "reference"):
        y = block(x, mode=mode)
        outs.append(y)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, 6, dtype=dtype)).sum(), [x, *params]))
    torch.testing.assert_close(outs[0], outs[1], rtol=tol, atol=tol)
    for g_fast, g_ref in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)


def _graph_names(t: torch.Tensor) -> set[str]:
    names, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node.name() not in names:
            names.add(node.name())
            stack.extend(fn for fn, _ in node.next_functions)
    return names


def test_fused_kernel_is_used_and_falls_back(monkeypatch):
    """Where the kernel is built the layer's features come from it; LAYERLAB_NO_EXTENSIONS=1 and a
    non-uniform grid take the PyTorch closed form and the recursion (same values)."""
    layer = KANLayer(5, 2, dtype=F64)
    x = torch.randn(3000, 5, dtype=F64, requires_grad=True) * 3  # rows enough for several threads' chunks
    w = torch.randn(3000, 5 * 9, dtype=F64)
    monkeypatch.setenv(bspline_kernel.NO_EXTENSIONS_ENV, "1")
    torch_form = layer.features(x)
    assert "_UniformBSplineFeaturesBackward" in _graph_names(torch_form)
    monkeypatch.delenv(bspline_kernel.NO_EXTENSIONS_ENV)
    if COMPILER:
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            fused = layer.features(x)
            (g_fused,) = torch.autograd.grad((fused * w).sum(), x)
        finally:
            torch.set_num_threads(threads)
        assert "_FusedUniformBSplineFeaturesBackward" in _graph_names(fused)
        torch.testing.assert_close(fused, torch_form, rtol=1e-12, atol=1e-12)
        (g_torch,) = torch.autograd.grad((torch_form * w).sum(), x)
        torch.testing.assert_close(g_fused, g_torch, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.grid[2, 3] += 0.05  # no longer uniform: the cached spacing is dropped
    bent = layer.features(x[:50])
    assert "_BSplineBasisBackward" in _graph_names(bent)  # the Cox–de Boor Function
    expected = torch.cat([F.silu(x[:50]).unsqueeze(-1), b_spline_basis_reference(x[:50], layer.grid, 3)], -1).flatten(-2)
    torch.testing.assert_close(bent, expected, rtol=1e-10, atol=1e-10)


def test_hessian_vector_products_by_torch_func_and_double_backward():
    """Forward-over-reverse (torch.func) and double backward through the fast form equal the
    reference form's; a plain call after the transforms still works (nothing made under a
    transform is cached)."""
    torch.manual_seed(54)
    block = KAN(8, dtype=F64)
    x = torch.randn(5, 8, dtype=F64) * 2
    params = dict(block.named_parameters())
    v = {k: torch.randn_like(t) for k, t in params.items()}

    def hvp(mode):
        def loss(p):
            return torch.func.functional_call(block, p, (x,), {"mode": mode}).square().sum()
        return torch.func.jvp(torch.func.grad(loss), (params,), (v,))[1]

    fast, ref = hvp("fast"), hvp("reference")
    g = torch.autograd.grad(block(x).square().sum(), list(params.values()), create_graph=True)
    double = torch.autograd.grad(g, list(params.values()), list(v.values()))
    for (name, r), d in zip(ref.items(), double):
        torch.testing.assert_close(fast[name], r, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(d, r, rtol=1e-10, atol=1e-10)
    assert max(r.abs().max() for r in ref.values()) > 0.1
