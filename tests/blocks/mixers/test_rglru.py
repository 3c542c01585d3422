"""RG-LRU recurrent block (Hawk; De et al. 2024, arXiv:2402.19427): the first token as the
official code runs it, the RG-LRU's equations and init, options. The shared contract
(tests/blocks/test_mixer_contract.py) covers forms, step, causality, state and state_dict at
the defaults; here the forms are also checked with ``normalize_first``."""
import math

import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.mixers.rglru import RGLRUBlock
from layerlab.blocks.mixers.scan import linear_scan
from layerlab.errors import ConfigError

from .contract import SHAPES, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

D = 16


def make(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return RGLRUBlock(D, d_rnn=kw.pop("d_rnn", 12), dtype=dtype, **kw)


# --- the first token -----------------------------------------------------------------------
def first_two_outputs(block, x):
    """y_0, y_1 written out: v_0 = b + w_{k-1} u_0, v_1 = b + w_{k-1} u_1 + w_{k-2} u_0 (u = W_in x);
    h_0 = m_0 i_0 v_0, h_1 = a_1 h_0 + sqrt(1 - a_1²) i_1 v_1, y_t = W_out(GeLU(W_g x_t) h_t)."""
    u = block.w_in(x[:, :2])
    v0 = block.conv_bias + block.conv_weight[:, -1] * u[:, 0]
    v1 = block.conv_bias + block.conv_weight[:, -1] * u[:, 1] + block.conv_weight[:, -2] * u[:, 0]
    a0, a1 = (torch.sigmoid(block.lam) ** (block.c * torch.sigmoid(block.w_a(v))) for v in (v0, v1))
    i0, i1 = (torch.sigmoid(block.w_x(v)) for v in (v0, v1))
    m0 = torch.sqrt(1 - a0 ** 2) if block.normalize_first else 1.0
    h0 = m0 * i0 * v0
    h1 = a1 * h0 + torch.sqrt(1 - a1 ** 2) * i1 * v1
    return [block.w_out(F.gelu(block.w_g(x[:, t])) * h) for t, h in ((0, h0), (1, h1))]


@pytest.mark.parametrize("normalize_first", [False, True])
def test_first_token_closed_form(normalize_first):
    """Default: the official code's multiplier 1 at position 0 (recurrentgemma resets at
    segment_pos == 0), so h_0 = i_0 v_0; normalize_first=True: sqrt(1 - a_0²) as Eq. 4 reads.
    Every form (scan, reference, step) gives the written-out y_0 and y_1."""
    block = make(normalize_first=normalize_first, d_rnn=6)
    x = torch.randn(3, 5, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0, y1 = first_two_outputs(block, x)
        for mode in block.modes:
            out = block(x, mode=mode)
            assert rel_err(out[:, 0], y0) <= 1e-12, mode
            assert rel_err(out[:, 1], y1) <= 1e-12, mode
        state = block.init_state(3)
        s0, state = block.step(x[:, 0], state)
        s1, _ = block.step(x[:, 1], state)
        assert rel_err(s0, y0) <= 1e-12 and rel_err(s1, y1) <= 1e-12


def test_the_two_first_token_choices_differ_by_the_multiplier():
    """Same weights: h_0 differs by the factor sqrt(1 - a_0²) in (0, 1), so the outputs differ."""
    official, paper = make(), make(normalize_first=True)
    paper.load_state_dict(official.state_dict())
    x = torch.randn(2, 4, D, dtype=torch.float64)
    with torch.no_grad():
        diff = rel_err(paper(x)[:, 0], official(x)[:, 0])
    assert diff > 0.1  # a_0 ~ 0.9..0.999 at init: the paper's h_0 is 4..44% of the official one


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forms_agree_with_normalize_first(dtype):
    block = make(dtype, normalize_first=True)
    for i, (B, L) in enumerate(SHAPES[:4]):
        check_forms_agree(block, B, L, seed=i)
    check_step_matches_forward(make(normalize_first=True), 2, 9)


def test_state_is_conv_buffer_h_and_the_first_token_flag():
    """RG-LRU: conv buffer (k-1) N plus h (N) plus one flag per sequence."""
    rg = RGLRUBlock(12, d_rnn=10, kernel_size=4)
    assert rg.state_size == 3 * 10 + 10 + 1
    conv, h, started = rg.init_state(2)
    assert started.dtype == torch.bool and not started.any()
    check_state_size(rg)


@pytest.mark.parametrize("mode", RGLRUBlock.modes)
def test_gradcheck(mode):
    torch.manual_seed(1)
    block = RGLRUBlock(4, d_rnn=3, dtype=torch.float64)
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_and_shape(dtype):
    block = make(dtype)
    for mode in block.modes:
        y = block(torch.randn(2, 5, D, dtype=dtype), mode=mode)
        assert y.dtype == dtype and y.shape == (2, 5, D) and torch.isfinite(y.float()).all()


# --- the RG-LRU's equations ----------------------------------------------------------------
def test_log_space_gate_is_a_to_the_c_r():
    """a_t from log a_t = -c r_t softplus(-Λ) equals σ(Λ)^(c r_t) (Eq. 3 and Appendix A)."""
    block = make()
    v = torch.randn(4, 9, block.d_rnn, dtype=torch.float64)
    a_t, _ = block._gates(v)
    r = torch.sigmoid(block.w_a(v))
    expected = torch.sigmoid(block.lam) ** (block.c * r)
    assert rel_err(a_t, expected) <= 1e-12
    # the recurrence weight lies in [a^c, 1): gates in [0, 1], never negative
    a_c = torch.sigmoid(block.lam) ** block.c
    assert (a_t >= a_c - 1e-15).all() and (a_t < 1).all()


def test_input_normalization_keeps_unit_variance():
    """h_t = a h_{t-1} + sqrt(1 - a²) x_t with unit-variance x keeps Var h ≈ 1 (without the
    factor it would be 1 / (1 - a²) ≈ 5.3 at a = 0.9)."""
    block = RGLRUBlock(4, d_rnn=64, dtype=torch.float64)
    with torch.no_grad():
        block.w_a.weight.zero_(); block.w_a.bias.fill_(0.0)  # r = 1/2
        block.w_x.weight.zero_(); block.w_x.bias.fill_(40.0)  # i = 1
        block.lam.fill_(math.log(0.9 ** (2 / block.c) / (1 - 0.9 ** (2 / block.c))))  # a^(c/2) = 0.9
    g = torch.Generator().manual_seed(0)
    v = torch.randn(256, 80, 64, generator=g, dtype=torch.float64)  # 0.9^160: start forgotten
    a, b = block._gates(v)
    assert torch.allclose(a, torch.full_like(a, 0.9), atol=1e-12)
    h = linear_scan(a, b)
    var = h[:, -1].var().item()  # 16384 samples: SE of the variance ~ 1.1%
    assert abs(var - 1) < 0.05, var


def test_closed_recurrence_gate_preserves_the_state():
    """r_t -> 0 gives a_t -> 1 and sqrt(1 - a_t²) -> 0: the step keeps h and discards the input
    (the paper's Appendix A: the gate can 'preserve all information from the previous history')."""
    block = RGLRUBlock(6, d_rnn=5, dtype=torch.float64)
    with torch.no_grad():
        block.w_a.weight.zero_(); block.w_a.bias.fill_(-30.0)
    conv, h, started = block.init_state(2)
    h, started = torch.randn_like(h), torch.ones_like(started)  # past the first token
    for _ in range(5):
        _, (conv, h_new, started) = block.step(torch.randn(2, 6, dtype=torch.float64) * 10, (conv, h, started))
        assert (h_new - h).abs().max() < 1e-5
        h = h_new


def test_init_a_to_the_c_uniform_in_paper_range():
    """Λ is drawn so that a^c = σ(Λ)^c ~ U[0.9, 0.999] (Sec. 2.4); gates LeCun normal, biases 0."""
    torch.manual_seed(0)
    block = RGLRUBlock(4, d_rnn=2000)
    a_c = (torch.sigmoid(block.lam.double()) ** block.c)
    assert a_c.min() >= 0.9 - 1e-6 and a_c.max() <= 0.999 + 1e-6
    assert abs(a_c.mean().item() - 0.9495) < 0.003  # uniform mean; SE = 0.0286 / sqrt(2000) = 0.0006
    assert abs((a_c < 0.9495).double().mean().item() - 0.5) < 0.05  # median at the midpoint
    assert abs((a_c < 0.92475).double().mean().item() - 0.25) < 0.04  # first quartile
    for gate in (block.w_a, block.w_x):
        assert abs(gate.weight.std().item() * math.sqrt(2000) - 1) < 0.01  # 4M draws
        assert torch.count_nonzero(gate.bias) == 0
    custom = RGLRUBlock(4, d_rnn=500, a_min=0.5, a_max=0.6, c=2.0)
    a_c = torch.sigmoid(custom.lam.double()) ** 2.0
    assert a_c.min() >= 0.5 - 1e-6 and a_c.max() <= 0.6 + 1e-6


def test_default_width_is_four_thirds():
    assert RGLRUBlock(48).d_rnn == 64 and RGLRUBlock(48, d_rnn=10).d_rnn == 10
    assert RGLRUBlock(48, expansion=2).d_rnn == 96


def test_conv_is_causal_short_filter():
    """The Conv1D sees only the last kernel_size inputs of its branch: with the gates frozen the
    RG-LRU input v_t ignores u_s for s <= t - k."""
    block = RGLRUBlock(D, kernel_size=3, dtype=torch.float64)
    u = torch.randn(1, 10, block.d_rnn, dtype=torch.float64)
    v = block._conv(u)
    u2 = u.clone()
    u2[:, 4] += 1.0
    changed = (block._conv(u2) - v).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False] * 4 + [True] * 3 + [False] * 3


def test_registered_with_paper_and_no_weight_decay_on_lambda():
    entry = layerlab.registry.get("mixer", "rglru")
    assert entry.paper.arxiv == "2402.19427" and entry.paper.year == 2024
    block = layerlab.build("mixer", "rglru", 8, c=4.0)
    assert isinstance(block, RGLRUBlock) and block.no_weight_decay == ("lam",)
    assert layerlab.registry.get("mixer", "rglru").width_multiple({}) == 1


@pytest.mark.parametrize("options, words", [
    ({"c": 0.0}, "c must be > 0"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"a_min": 0.99, "a_max": 0.9}, "a_min"),
    ({"a_max": 1.0}, "a_max"),
    ({"d_rnn": 0}, "d_rnn"),
    ({"expansion": 0.0}, "expansion"),
    ({"heads": 2}, "unknown option"),
])
def test_bad_options(options, words):
    with pytest.raises(ConfigError, match=words):
        layerlab.build("mixer", "rglru", 16, **options)
