"""Group-rational KAN of KAT: the rational form by hand, group sharing, Horner against the plain
sum of powers, the fitted inits, variance-preserving initialization, widths and options. Shapes,
dtypes, gradcheck and state_dict: the channel contract (tests/blocks/test_channel_contract.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.channels.grkan import (
    GRKAN,
    GroupRational,
    GRKANLayer,
    fitted_rational,
    group_rational,
    group_rational_reference,
    rational_second_moment,
)
from layerlab.blocks.channels.mlp import MLP
from layerlab.errors import ConfigError

F64 = torch.float64


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


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


def test_grkan_layer_options():
    with pytest.raises(ConfigError, match="init"):
        GroupRational(8, init="relu")
    layer = GRKANLayer(8, 4, groups=4, init="swish", bias=False)
    assert layer.linear.bias is None and layer.rational.numerator.shape == (4, 6)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("groups, m, n", [(1, 5, 4), (3, 4, 3), (4, 2, 1)])
def test_horner_equals_plain_sum_of_powers(groups, m, n, dtype, tol):
    """``group_rational`` (Horner) against ``group_rational_reference`` (Σ a_i x^i / (1 + |Σ b_i x^i|)):
    values and gradients in x, a and b."""
    gen = torch.Generator().manual_seed(20)
    a = torch.randn(groups, m + 1, generator=gen, dtype=dtype).requires_grad_()
    b = torch.randn(groups, n, generator=gen, dtype=dtype).requires_grad_()
    x = (2 * torch.randn(2, 5, 4 * groups, generator=gen, dtype=dtype)).requires_grad_()
    fast, ref = group_rational(x, a, b), group_rational_reference(x, a, b)
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol)
    w = torch.randn(fast.shape, generator=gen, dtype=dtype)
    for g_fast, g_ref in zip(torch.autograd.grad((fast * w).sum(), (x, a, b)), torch.autograd.grad((ref * w).sum(), (x, a, b))):
        torch.testing.assert_close(g_fast, g_ref, rtol=tol, atol=tol)


def test_docstring_says_how_the_authors_kernel_differs():
    """The authors' kernel evaluates P(x) / (1 + Σ|b_i||x|^i) with one numerator for all groups:
    a different function from the paper's P(x) / (1 + |Σ b_i x^i|) that this block computes."""
    doc = " ".join(GRKAN.__doc__.split())
    assert "``1 + |b_1||x| + ... + |b_n||x|^n``" in doc and "shared by all groups" in doc
    a = torch.tensor([[0.1, 1.0, 0.5, -0.2, 0.1, 0.02]], dtype=F64)
    b = torch.tensor([[-0.5, 0.3, 0.2, -0.1]], dtype=F64)  # Q changes sign: |Q| != Σ|b_i||x|^i
    x = torch.linspace(-3, 3, 61, dtype=F64)[:, None]
    kernel = sum(a[0, i] * x**i for i in range(6)) / (1 + sum(b[0, i - 1].abs() * x.abs() ** i for i in range(1, 5)))
    assert (kernel - group_rational(x, a, b)).abs().max() > 0.1
