"""Griffin (De et al. 2024, arXiv:2402.19427): local multi-query attention (not registered on its
own, so the mixer contract runs here) and the residual pattern of recurrent and attention
blocks. The shared contract (tests/blocks/test_mixer_contract.py) covers ``griffin`` itself
at its default pattern; here also the other patterns."""
import pytest
import torch

import layerlab
from layerlab.blocks.mixers.attention import causal_softmax, rope
from layerlab.blocks.mixers.griffin import Griffin, LocalMQA
from layerlab.blocks.mixers.rglru import RGLRUBlock
from layerlab.blocks.norms import RMSNorm
from layerlab.errors import ConfigError, ShapeError

from .contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

D = 16


# --- local attention: the mixer contract -------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_local_attention_forms_agree(dtype):
    torch.manual_seed(0)
    block = LocalMQA(D, n_heads=2, window=5, dtype=dtype)
    for i, (B, L) in enumerate([(1, 1), (2, 7), (1, 13)]):
        check_forms_agree(block, B, L, seed=i)


@pytest.mark.parametrize("rope_on", [True, False])
def test_local_attention_step_causal_state(rope_on):
    torch.manual_seed(1)
    block = LocalMQA(D, n_heads=4, window=3, rope=rope_on, dtype=torch.float64)
    for B, L in [(1, 1), (2, 9)]:
        check_step_matches_forward(block, B, L)
    check_causal(block, L=11)
    check_state_size(block)
    assert block.state_size == 3 * 4 * 2 + 3 + 1  # W keys, W values (width d_h), W flags, counter


@pytest.mark.parametrize("pattern", ["r", "a", "ara"])
def test_other_patterns_forms_step_causal(pattern):
    torch.manual_seed(2)
    block = Griffin(D, pattern=pattern, n_heads=2, window=3, d_rnn=8, dtype=torch.float64)
    check_forms_agree(block, 2, 7)
    check_step_matches_forward(block, 2, 7)
    check_causal(block, L=9)
    check_state_size(block)


def test_state_sizes_are_the_sub_blocks():
    local = LocalMQA(12, n_heads=3, window=7)
    rg = RGLRUBlock(12, d_rnn=10)
    griffin = Griffin(12, pattern="rra", n_heads=3, window=7, d_rnn=10)
    assert griffin.state_size == 2 * rg.state_size + local.state_size
    assert len(griffin.init_state(1)) == 2 * len(rg.init_state(1)) + len(local.init_state(1))


@pytest.mark.parametrize("block", ["local", "griffin"])
@pytest.mark.parametrize("mode_index", [0, 1])
def test_gradcheck(block, mode_index):
    torch.manual_seed(1)
    block = (LocalMQA(4, n_heads=2, window=2, dtype=torch.float64) if block == "local"
             else Griffin(4, pattern="ra", n_heads=2, window=2, d_rnn=3, dtype=torch.float64))
    mode = block.modes[mode_index]
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    # fast_mode: the Jacobian along random directions (the loops of the reference forms make the
    # full finite-difference Jacobian slow); it fails on any wrong derivative all the same
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_and_shape(dtype):
    torch.manual_seed(3)
    for block in (LocalMQA(D, window=5, dtype=dtype), Griffin(D, window=5, dtype=dtype)):
        for mode in block.modes:
            y = block(torch.randn(2, 5, D, dtype=dtype), mode=mode)
            assert y.dtype == dtype and y.shape == (2, 5, D) and torch.isfinite(y.float()).all()
        with pytest.raises(ShapeError, match="got \\(2, 5, 8\\)"):
            block(torch.randn(2, 5, 8, dtype=dtype))


# --- local attention and Griffin ---------------------------------------------------------
def test_local_attention_window_limits_the_context():
    torch.manual_seed(3)
    block = LocalMQA(D, n_heads=2, window=3, dtype=torch.float64)
    x = torch.randn(1, 10, D, dtype=torch.float64)
    for mode in block.modes:
        y = block(x, mode=mode)
        for s, seen in ((6, False), (7, True), (9, True)):
            x2 = x.clone()
            x2[:, s] += 1.0
            assert (not torch.allclose(block(x2, mode=mode)[:, 9], y[:, 9])) == seen, (mode, s)


def test_local_attention_with_long_window_is_causal_mqa():
    """window >= L: full causal attention with one shared key/value head (written out here)."""
    torch.manual_seed(4)
    block = LocalMQA(D, n_heads=4, window=50, rope=False, dtype=torch.float64)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    q = block.w_q(x).view(2, 9, 4, 4).transpose(1, 2)
    k, v = block.w_kv(x).chunk(2, dim=-1)
    expected = causal_softmax(q, k.unsqueeze(1)) @ v.unsqueeze(1)
    expected = block.w_o(expected.transpose(1, 2).reshape(2, 9, D))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode), expected) <= 1e-12


def test_local_attention_rotates_as_attention_does():
    """rope=True with a long window: the same function as causal attention with rope whose keys
    and values are the one shared head (attention's rope convention, one ``rope`` function)."""
    torch.manual_seed(6)
    block = LocalMQA(D, n_heads=2, window=50, dtype=torch.float64)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    pos = torch.arange(7)
    q = rope(block.w_q(x).view(2, 7, 2, 8).transpose(1, 2), pos)
    k, v = block.w_kv(x).chunk(2, dim=-1)
    k = rope(k, pos)
    expected = causal_softmax(q, k.unsqueeze(1)) @ v.unsqueeze(1)
    expected = block.w_o(expected.transpose(1, 2).reshape(2, 7, D))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode), expected) <= 1e-12


def test_griffin_is_the_residual_pattern():
    torch.manual_seed(5)
    block = Griffin(D, pattern="ra", window=4, dtype=torch.float64)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    z1 = x + block.blocks[0](block.norms[0](x))
    z2 = z1 + block.blocks[1](block.norms[1](z1))
    assert isinstance(block.blocks[0], RGLRUBlock) and isinstance(block.blocks[1], LocalMQA)
    assert isinstance(block.norms[0], RMSNorm)
    assert rel_err(block(x), z2 - x) <= 1e-12
    assert [type(b).__name__ for b in Griffin(D).blocks] == ["RGLRUBlock", "RGLRUBlock", "LocalMQA"]


def test_width_multiple():
    assert Griffin.width_multiple(pattern="rra", n_heads=4) == 8
    assert Griffin.width_multiple(pattern="rra", n_heads=4, rope=False) == 4
    assert Griffin.width_multiple(pattern="rr", n_heads=4) == 1
    assert layerlab.registry.get("mixer", "griffin").width_multiple({"n_heads": 2}) == 4
    assert layerlab.registry.get("mixer", "rglru").width_multiple({}) == 1


def test_registered_with_paper_and_options_pass_through():
    entry = layerlab.registry.get("mixer", "griffin")
    assert entry.paper.arxiv == "2402.19427" and entry.paper.year == 2024
    block = layerlab.build("mixer", "griffin", 16, normalize_first=True, d_rnn=8)
    assert all(b.normalize_first for b in block.blocks if isinstance(b, RGLRUBlock))
    assert block.blocks[0].d_rnn == 8


@pytest.mark.parametrize("options, words", [
    ({"pattern": "rx"}, "pattern"),
    ({"pattern": ""}, "pattern"),
    ({"window": 0}, "window"),
    ({"n_heads": 3}, "divisible"),
    ({"n_heads": 16}, "even head dimension"),
    ({"n_heads": 0}, "n_heads"),
    ({"c": 0.0}, "c must be > 0"),
    ({"heads": 2}, "unknown option"),
])
def test_bad_options(options, words):
    with pytest.raises(ConfigError, match=words):
        layerlab.build("mixer", "griffin", 16, **options)
