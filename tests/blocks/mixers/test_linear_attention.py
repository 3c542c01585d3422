"""Linear attention (Katharopoulos et al. 2020): forms agree, step == forward, causality, the
normalized output equals the quadratic (attention-matrix) form, options and contracts."""
import pytest
import torch
import torch.nn.functional as F

import layerlab
from layerlab.blocks.mixers.linear_attention import LinearAttention
from layerlab.errors import ConfigError, ShapeError
from layerlab.registry import get

from .contract import SHAPES, check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_chunk_matches_reference(shape, dtype, normalize):
    """Outputs and gradients, rel err <= 1e-10 (float64) / 1e-4 (float32); chunk 16 so that
    lengths 33 and 70 cross several chunk boundaries, 7 stays inside one."""
    torch.manual_seed(shape[0] * 100 + shape[1])
    block = LinearAttention(16, n_heads=2, normalize=normalize, chunk_size=16, bias=True, dtype=dtype)
    check_forms_agree(block, *shape)


@pytest.mark.parametrize("normalize", [True, False])
def test_step_causal_state_size(normalize):
    torch.manual_seed(1)
    block = LinearAttention(12, n_heads=3, normalize=normalize, chunk_size=8, dtype=torch.float64)
    check_step_matches_forward(block, 2, 19)  # float64, 1e-10
    check_causal(block)
    check_state_size(block)
    d = 4  # d_model / n_heads
    assert block.state_size == 3 * d * (d + 1 if normalize else d)  # s (and z) per head


def test_normalized_output_is_the_papers_quadratic_form():
    """V'_i = sum_{j<=i} phi(Q_i).phi(K_j) V_j / sum_{j<=i} phi(Q_i).phi(K_j), written directly
    from the attention matrix (Sec. 3.3), per head, then W_O; rel err <= 1e-10."""
    torch.manual_seed(2)
    B, L, D, H = 2, 11, 8, 2
    block = LinearAttention(D, n_heads=H, eps=0.0, chunk_size=4, dtype=torch.float64)
    x = torch.randn(B, L, D, dtype=torch.float64)
    q, k, v = block.w_qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    A = (phi_q @ phi_k.transpose(-1, -2)).tril()  # (B, H, L, L), causal
    heads = (A @ v) / A.sum(-1, keepdim=True)
    expected = block.w_o(heads.transpose(1, 2).reshape(B, L, D))
    for mode in block.modes:
        assert rel_err(block(x, mode=mode), expected) <= 1e-10
    # without the denominator: the plain causal sum
    plain = LinearAttention(D, n_heads=H, normalize=False, dtype=torch.float64)
    plain.load_state_dict(block.state_dict())
    expected_plain = plain.w_o((A @ v).transpose(1, 2).reshape(B, L, D))
    assert rel_err(plain(x), expected_plain) <= 1e-10
    assert rel_err(plain(x), expected) > 1e-2  # normalizing changes the function


def test_normalized_output_is_a_convex_combination_of_values():
    """With normalize, each head's output lies in the convex hull of the values seen so far: with
    W_O = I, every output coordinate is within [min, max] of that coordinate over V_{<=t}."""
    torch.manual_seed(3)
    D, H = 8, 2
    block = LinearAttention(D, n_heads=H, eps=0.0, dtype=torch.float64)
    with torch.no_grad():
        block.w_o.weight.copy_(torch.eye(D))
    x = 3 * torch.randn(1, 20, D, dtype=torch.float64)
    y = block(x)
    v = block.w_qkv(x)[..., 2 * D:]
    lo, hi = v.cummin(dim=1).values, v.cummax(dim=1).values
    assert ((y >= lo - 1e-12) & (y <= hi + 1e-12)).all()
    assert torch.allclose(y[:, 0], v[:, 0], rtol=0, atol=1e-12)  # the first output is V_1


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("mode", LinearAttention.modes)
def test_gradcheck(mode, normalize):
    torch.manual_seed(4)
    block = LinearAttention(4, n_heads=2, normalize=normalize, chunk_size=2, bias=True, dtype=torch.float64)
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x, mode=mode), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_preserved(dtype):
    block = LinearAttention(16, n_heads=4, dtype=dtype)
    x = torch.randn(2, 5, 16, dtype=dtype)
    for mode in block.modes:
        y = block(x, mode=mode)
        assert y.dtype == dtype and y.shape == (2, 5, 16)
    y_t, (s,) = block.step(x[:, 0], block.init_state(2))
    assert y_t.dtype == dtype and s.dtype == torch.promote_types(dtype, torch.float32)


def test_init_statistics():
    torch.manual_seed(6)
    block = LinearAttention(256, n_heads=4, bias=True)
    for lin in (block.w_qkv, block.w_o):
        assert abs(lin.weight.std().item() * 16 - 1) < 0.02  # std 256^-1/2; n >= 65536: SE ~ 0.3%
        assert torch.count_nonzero(lin.bias) == 0


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="d_model=30 is not divisible by n_heads=4"):
        LinearAttention(30, n_heads=4)
    with pytest.raises(ConfigError, match="n_heads must be >= 1"):
        LinearAttention(8, n_heads=0)
    with pytest.raises(ConfigError, match="chunk_size"):
        LinearAttention(8, n_heads=2, chunk_size=0)
    with pytest.raises(ConfigError, match="eps"):
        LinearAttention(8, n_heads=2, eps=-1.0)
    with pytest.raises(ConfigError, match="unknown option"):
        layerlab.build("mixer", "linear_attention", 8, feature_map="relu")
    block = LinearAttention(8, n_heads=2)
    with pytest.raises(ShapeError, match="got \\(2, 3, 6\\)"):
        block(torch.randn(2, 3, 6))
    with pytest.raises(ShapeError):
        block.step(torch.randn(2, 3, 8), block.init_state(2))
    with pytest.raises(ConfigError, match="chunk, reference"):
        block(torch.randn(1, 3, 8), mode="parallel")


def test_registry_width_multiple_and_default_mode():
    assert get("mixer", "linear_attention").width_multiple({"n_heads": 8}) == 8
    block = layerlab.build("mixer", "linear_attention", 8, n_heads=2)
    assert isinstance(block, LinearAttention) and block.modes[0] == "chunk" and block.recurrent
    x = torch.randn(1, 4, 8)
    assert torch.equal(block(x), block(x, mode="chunk"))
