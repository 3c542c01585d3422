"""Activations: the papers' formulas and gradients; SELU's self-normalization, alpha dropout's
moments, StableMax where softmax collapses; and, at the end, the block contract (shapes over (*),
dtypes, gradcheck, state_dict, options) over every registered activation."""
import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.activations import (
    SELU_ALPHA,
    SELU_LAMBDA,
    alpha_dropout,
    alpha_dropout_affine,
    lecun_normal_,
    log_stablemax,
    selu,
    stablemax,
    stablemax_cross_entropy,
    stablemax_s,
)
from layerlab.errors import ConfigError, ShapeError

from .test_channel_contract import (
    INPUT_SHAPES,
    check_bfloat16_buffers,
    check_dtype,
    check_gradcheck,
    check_shapes,
    check_state_dict_round_trip,
    check_unknown_option,
)

FORMULAS = {
    "gelu": lambda x: x * 0.5 * (1 + torch.erf(x / math.sqrt(2))),  # x Phi(x)
    "relu": lambda x: torch.maximum(x, torch.zeros_like(x)),  # max(0, x)
    "silu": lambda x: x / (1 + torch.exp(-x)),  # x sigma(x)
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_equals_paper_formula(name):
    torch.manual_seed(0)
    x = 4 * torch.randn(1000, dtype=torch.float64)
    act = layerlab.build("activation", name, 16)
    torch.testing.assert_close(act(x), FORMULAS[name](x), rtol=1e-12, atol=1e-14)


def test_gelu_tanh_approximation():
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    approx = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(layerlab.build("activation", "gelu", 1, approximate="tanh")(x), approx)
    assert (approx - FORMULAS["gelu"](x)).abs().max() > 1e-5  # the two forms do differ
    with pytest.raises(ConfigError):
        layerlab.build("activation", "gelu", 1, approximate="fast")


# ---------------------------------------------------------------------------------------------
# PolyReLU, PolyNorm, SELU, StableMax
# ---------------------------------------------------------------------------------------------
NEW = ["polyrelu", "polynorm", "selu", "stablemax"]


def randomize_a(block, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        block.a.copy_(torch.randn(block.a.shape, generator=gen, dtype=torch.float64))
    return block


def away_from_zero(x, gap=0.1):
    return x + gap * torch.sign(x)


# --- PolyCom ------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 3, 5])
def test_polyrelu_equals_formula(r):
    block = randomize_a(layerlab.build("activation", "polyrelu", 16, r=r, dtype=torch.float64))
    x = 2 * torch.randn(50, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    relu = torch.where(x > 0, x, torch.zeros_like(x))
    expected = sum(block.a[i] * relu**i for i in range(r + 1))  # sum_i a_i ReLU(x)^i
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_polyrelu_with_a_0100_is_relu():
    block = layerlab.build("activation", "polyrelu", 8, dtype=torch.float64)
    with torch.no_grad():
        block.a.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    x = 3 * torch.randn(100, 8, dtype=torch.float64)
    torch.testing.assert_close(block(x), F.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["polyrelu", "polynorm"])
def test_polycom_init_is_the_papers(name):
    # paper (r = 3): a_0 = 0, a_1 = a_2 = a_3 = 1/3; 1/r for other orders
    assert torch.equal(layerlab.build("activation", name, 8).a, torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3]))
    assert torch.equal(layerlab.build("activation", name, 8, r=4).a, torch.tensor([0.0] + [0.25] * 4))
    assert layerlab.build("activation", name, 8, r=2).a.requires_grad


@pytest.mark.parametrize("eps", [1e-6, 0.0])
@pytest.mark.parametrize("r", [1, 3, 4])
def test_polynorm_equals_formula(r, eps):
    block = randomize_a(layerlab.build("activation", "polynorm", 16, r=r, eps=eps, dtype=torch.float64))
    x = torch.randn(3, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = block.a[0] + sum(
        block.a[i] * x**i / torch.sqrt((x**i).pow(2).mean(-1, keepdim=True) + eps) for i in range(1, r + 1)
    )
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_polynorm_terms_have_unit_rms_over_channels():
    x = torch.randn(5, 9, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = layerlab.build("activation", "polynorm", 32, r=4, eps=0.0, dtype=torch.float64)
    terms = exact.terms(x)
    assert terms.shape == (5, *x.shape)
    assert torch.equal(terms[0], torch.ones_like(x))
    rms = terms[1:].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=1e-12)
    # with eps: RMS of term i is sqrt(ms_i / (ms_i + eps)), ms_i = mean_j x_j^(2i)
    block = layerlab.build("activation", "polynorm", 32, r=4, dtype=torch.float64)
    ms = torch.stack([(x**i).pow(2).mean(-1) for i in range(1, 5)])
    rms = block.terms(x)[1:].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.sqrt(ms / (ms + 1e-6)), rtol=1e-12, atol=0)
    # PolyNorm is invariant to a positive rescaling of a position's input (eps = 0)
    randomize_a(exact)
    torch.testing.assert_close(exact(37.0 * x), exact(x), rtol=1e-10, atol=1e-12)


def test_polynorm_normalizes_each_position_on_its_own():
    block = randomize_a(layerlab.build("activation", "polynorm", 8, dtype=torch.float64))
    x = torch.randn(4, 6, 8, dtype=torch.float64)
    y = block(x)
    x2 = x.clone()
    x2[1:, 3:] = 100 * torch.randn(3, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(block(x2)[0], y[0], rtol=0, atol=0)
    torch.testing.assert_close(block(x2)[:, :3], y[:, :3], rtol=0, atol=0)


def test_polycom_bad_options_and_shapes():
    for r in (0, 2.5, True):
        with pytest.raises(ConfigError, match="r "):
            layerlab.build("activation", "polyrelu", 8, r=r)
    with pytest.raises(ConfigError, match="eps"):
        layerlab.build("activation", "polynorm", 8, eps=-1.0)
    with pytest.raises(ShapeError, match="D = d_model = 8"):
        layerlab.build("activation", "polynorm", 8)(torch.randn(3, 4))


@pytest.mark.parametrize("name", ["polyrelu", "polynorm"])
def test_polycom_gradcheck_input_and_coefficients(name):
    block = randomize_a(layerlab.build("activation", name, 4, dtype=torch.float64))
    x = away_from_zero(torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))
    a = block.a.detach().clone()

    def f(x, a):
        return torch.func.functional_call(block, {"a": a}, (x,))

    assert torch.autograd.gradcheck(f, (x.requires_grad_(True), a.requires_grad_(True)))


# --- SELU and alpha dropout ---------------------------------------------------------------------


def test_selu_constants_match_paper_and_torch():
    # paper's digits (Eq. 14 and text): alpha_01 ~ 1.6733, lambda_01 ~ 1.0507
    assert round(SELU_ALPHA, 4) == 1.6733 and round(SELU_LAMBDA, 4) == 1.0507
    # torch's selu uses the constants to 32 digits: read them back from the function
    one = torch.tensor(1.0, dtype=torch.float64)
    assert abs(F.selu(one).item() - SELU_LAMBDA) < 1e-7 * SELU_LAMBDA
    lam_alpha = -F.selu(torch.tensor(-800.0, dtype=torch.float64)).item()  # e^-800 = 0
    assert abs(lam_alpha / F.selu(one).item() - SELU_ALPHA) < 1e-7 * SELU_ALPHA
    # closed form vs torch's constants: ~1e-15 apart in fact
    assert abs(SELU_LAMBDA - 1.0507009873554804934193349852946) < 1e-14
    assert abs(SELU_ALPHA - 1.6732632423543772848170429916717) < 1e-14


def test_selu_equals_definition():
    x = 5 * torch.randn(2000, dtype=torch.float64)
    x[:3] = torch.tensor([0.0, 1e3, -1e3], dtype=torch.float64)
    expected = torch.where(x > 0, SELU_LAMBDA * x, SELU_LAMBDA * SELU_ALPHA * (torch.exp(x) - 1))
    block = layerlab.build("activation", "selu", 8)
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(block(x), F.selu(x), rtol=1e-12, atol=1e-14)
    g = torch.autograd.grad(selu(x.requires_grad_(True)).sum(), x)[0]
    assert torch.isfinite(g).all()  # no inf * 0 from the branch not taken at x = 1e3


def deep_net_moments(act, width=512, depth=32, batch=256, seed=0):
    """Mean, variance and second moment of the activations of each layer of a deep
    act(W x) stack with LeCun-normal weights, standard normal inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=gen)
    stats = []
    for _ in range(depth):
        w = lecun_normal_(torch.empty(width, width), generator=gen)
        x = act(x @ w.T)
        stats.append((x.mean().item(), x.var().item(), x.pow(2).mean().item()))
    return stats


def test_selu_keeps_mean_0_variance_1_through_32_layers_relu_does_not():
    # measured over seeds 0-4: max |mean| 0.014, max |var - 1| 0.030 over the 32 layers
    for mean, var, _ in deep_net_moments(layerlab.build("activation", "selu", 512)):
        assert abs(mean) < 0.05 and abs(var - 1) < 0.1
    # ReLU with the same init: the second moment halves per layer (E relu(h)^2 = Var h / 2);
    # one layer's ratio is noisy (0.39..0.64 measured), their geometric mean is 0.50
    relu = deep_net_moments(F.relu)
    ratios = [b[2] / a[2] for a, b in pairwise(relu)]
    assert all(q < 0.7 for q in ratios)
    assert 0.45 < (relu[-1][2] / relu[0][2]) ** (1 / 31) < 0.55
    assert relu[-1][2] < 1e-8  # 2^-32 ~ 2.3e-10 measured


def test_lecun_normal_variance_is_one_over_fan_in():
    gen = torch.Generator().manual_seed(5)
    w = lecun_normal_(torch.empty(1024, 256), generator=gen)
    assert abs(w.var().item() * 256 - 1) < 0.03 and abs(w.mean().item()) < 1e-3
    conv = lecun_normal_(torch.empty(512, 16, 8), generator=gen)  # fan_in = 16 * 8
    assert abs(conv.var().item() * 128 - 1) < 0.03
    with pytest.raises(ShapeError):
        lecun_normal_(torch.empty(5))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_alpha_dropout_keeps_mean_0_variance_1_in_training(p):
    gen = torch.Generator().manual_seed(6)
    x = selu(torch.randn(200_000, dtype=torch.float64, generator=gen))  # mean 0, var 1
    y = alpha_dropout(x, p, training=True, generator=gen)
    # measured over 3 seeds at n = 200k: |mean| <= 0.004, |var - 1| <= 0.007
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1) < 0.02
    alpha_p, a, b = alpha_dropout_affine(p)
    assert alpha_p == -SELU_LAMBDA * SELU_ALPHA
    dropped = torch.isclose(y, torch.full_like(y, a * alpha_p + b), rtol=0, atol=1e-12)
    assert abs(dropped.double().mean().item() - p) < 0.005
    torch.testing.assert_close(y[~dropped], a * x[~dropped] + b, rtol=1e-12, atol=1e-12)
    # torch's own alpha dropout of zeros takes exactly the two values b (kept) and a alpha' + b
    values = torch.unique(F.alpha_dropout(torch.zeros(10_000, dtype=torch.float64), p, True))
    torch.testing.assert_close(values, torch.tensor([a * alpha_p + b, b], dtype=torch.float64))


def test_selu_dropout_only_in_training_mode():
    x = torch.randn(64, 32)
    block = layerlab.build("activation", "selu", 32, dropout=0.2)
    assert not torch.equal(block.train()(x), selu(x))
    assert torch.equal(block.eval()(x), selu(x))
    assert torch.equal(layerlab.build("activation", "selu", 32).train()(x), selu(x))
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="drop rate"):
            layerlab.build("activation", "selu", 8, dropout=bad)


def test_selu_and_alpha_dropout_gradcheck():
    x = away_from_zero(torch.randn(3, 4, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(selu, (x,))
    assert torch.autograd.gradcheck(
        lambda x: alpha_dropout(selu(x), 0.3, generator=torch.Generator().manual_seed(0)), (x,)
    )


# --- StableMax ----------------------------------------------------------------------------------


def test_stablemax_hand_values():
    x = torch.tensor([0.0, 1.0, -1.0, 3.0], dtype=torch.float64)  # s = 1, 2, 1/2, 4; sum 7.5
    expected = torch.tensor([1.0, 2.0, 0.5, 4.0], dtype=torch.float64) / 7.5
    torch.testing.assert_close(stablemax(x), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(layerlab.build("activation", "stablemax", 4)(x), expected, rtol=1e-15, atol=0)
    y = stablemax(torch.tensor([-3.0, 0.5], dtype=torch.float64))  # s = 1/4, 3/2
    torch.testing.assert_close(y, torch.tensor([0.25, 1.5], dtype=torch.float64) / 1.75)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_stablemax_sums_to_one_over_dim(dim):
    x = 10 * torch.randn(3, 5, 7, dtype=torch.float64)
    y = layerlab.build("activation", "stablemax", 7, dim=dim)(x)
    assert (y > 0).all()
    torch.testing.assert_close(y.sum(dim), torch.ones_like(y.sum(dim)), rtol=0, atol=1e-12)
    torch.testing.assert_close(log_stablemax(x, dim), torch.log(y), rtol=1e-12, atol=1e-12)


def test_stablemax_stays_finite_where_softmax_collapses():
    logits = torch.tensor([[1e4, -1e4, 5e3, 0.0, -3e3], [-2e4, 2e4, 1e4, 3e3, -1.0]])  # float32
    soft = F.softmax(logits, dim=-1)
    assert (soft == 0).sum() == 8  # softmax underflows to exact 0 for every non-max class
    p = stablemax(logits)
    assert torch.isfinite(p).all() and (p > 0).all()
    assert torch.isfinite(log_stablemax(logits)).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(2), rtol=0, atol=1e-6)
    # at the max class, softmax CE is exactly 0 with an exactly zero gradient (Softmax Collapse);
    # StCE still has a nonzero loss and a nonzero gradient on every logit
    targets = logits.argmax(-1)
    z = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(z, targets)
    loss.backward()
    assert loss.item() == 0 and (z.grad == 0).all()
    z.grad = None
    loss = stablemax_cross_entropy(z, targets)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(z.grad).all() and (z.grad != 0).all()


def test_stablemax_cross_entropy_is_minus_log_stablemax_at_target():
    gen = torch.Generator().manual_seed(7)
    logits = 5 * torch.randn(4, 6, 10, dtype=torch.float64, generator=gen)
    targets = torch.randint(0, 10, (4, 6), generator=gen)
    p = stablemax(logits)
    expected = -torch.log(p.gather(-1, targets[..., None]).squeeze(-1))
    none = stablemax_cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(none, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stablemax_cross_entropy(logits, targets), expected.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(stablemax_cross_entropy(logits, targets, "sum"), expected.sum(), rtol=1e-12, atol=0)
    # float32 / bfloat16 logits: computed in float64, returned in float32
    for dtype in (torch.float32, torch.bfloat16):
        lo = logits.to(dtype)
        loss = stablemax_cross_entropy(lo, targets)
        assert loss.dtype == torch.float32
        ref = -log_stablemax(lo.double()).gather(-1, targets[..., None]).mean()
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="reduction"):
        stablemax_cross_entropy(logits, targets, reduction="avg")
    with pytest.raises(ShapeError, match="targets"):
        stablemax_cross_entropy(logits, targets[:, :3])


def test_stablemax_s_is_c1_at_zero_not_c2():
    assert stablemax_s(torch.tensor(0.0, dtype=torch.float64)).item() == 1.0

    def derivatives(v):
        x = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        (d1,) = torch.autograd.grad(stablemax_s(x), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1, x)
        return stablemax_s(x).item(), d1.item(), d2.item()

    for h in (1e-3, 1e-6):
        (sp, dp, ddp), (sm, dm, ddm) = derivatives(h), derivatives(-h)
        assert abs(sp - 1) <= 2 * h and abs(sm - 1) <= 2 * h  # s continuous
        assert abs(dp - 1) == 0 and abs(dm - 1) <= 3 * h  # s' continuous: 1 and 1/(1+h)^2
        assert ddp == 0 and abs(ddm - 2) <= 7 * h  # s'' jumps from 2 to 0
    assert derivatives(0.0)[1] == 1.0
    assert derivatives(1.0)[1:] == (1.0, 0.0)  # x = 1: the 1/(1-x) branch not taken stays finite


def test_stablemax_gradcheck():
    x = away_from_zero(torch.randn(3, 5, dtype=torch.float64)).requires_grad_(True)
    targets = torch.tensor([0, 4, 2])
    assert torch.autograd.gradcheck(stablemax, (x,))
    assert torch.autograd.gradcheck(log_stablemax, (x,))
    assert torch.autograd.gradcheck(lambda x: stablemax_cross_entropy(x, targets), (x,))


# --- statistics in float32 or wider ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", NEW)
def test_new_dtype_preserved_with_wide_statistics(name, dtype):
    block = layerlab.build("activation", name, 8, **({"dropout": 0.1} if name == "selu" else {}))
    x = 3 * torch.randn(3, 8)
    y = block.eval()(x.to(dtype))
    assert y.dtype == dtype
    if dtype == torch.bfloat16:  # computed in float32, rounded once at the end
        assert torch.equal(y, block(x.to(dtype).float()).to(dtype))


# --- the block contract, over every registered activation ---------------------------------------
# shapes over (*, D), dtypes, gradcheck, state_dict round trip, unknown options, bfloat16 cast:
# the checks of tests/blocks/test_channel_contract.py, so a new activation is checked automatically.

ACTIVATIONS = layerlab.names("activation")


@pytest.mark.parametrize("lead", list(INPUT_SHAPES.values()), ids=list(INPUT_SHAPES))
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_contract_shapes(name, lead):
    check_shapes("activation", name, lead)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_contract_dtype(name, dtype):
    check_dtype("activation", name, dtype)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_contract_gradcheck_state_dict_options_and_bfloat16(name):
    check_gradcheck("activation", name)
    check_state_dict_round_trip("activation", name)
    check_unknown_option("activation", name)
    check_bfloat16_buffers("activation", name)
