"""Channel mixers: MLP (GELU) and SwiGLU — equations, sizes, init, options (shapes, dtypes, gradcheck,
state_dict: tests/blocks/test_channel_contract.py)."""
import math

import pytest
import torch

import layerlab
from layerlab.blocks.channels import MLP, SwiGLU
from layerlab.blocks.channels.mlp import swiglu_hidden
from layerlab.errors import ConfigError

NAMES = ["mlp", "swiglu"]


def gelu_paper(z):
    return z * 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def test_mlp_equation():
    torch.manual_seed(0)
    block = MLP(6, hidden=10, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    W1, b1, W2, b2 = block.fc1.weight, block.fc1.bias, block.fc2.weight, block.fc2.bias
    expected = gelu_paper(x @ W1.T + b1) @ W2.T + b2
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-14)


def test_swiglu_equation():
    torch.manual_seed(1)
    block = SwiGLU(6, hidden=10, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    W, V, W2 = block.w.weight.T, block.v.weight.T, block.w2.weight.T  # row-vector convention
    xW = x @ W
    expected = (xW * torch.sigmoid(xW) * (x @ V)) @ W2
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-14)
    assert block.w.bias is None, "the paper's SwiGLU has no biases by default"


def test_hidden_widths():
    assert MLP(64).hidden == 256
    assert MLP(10, expansion=2.5).hidden == 25
    assert MLP(64, hidden=100).hidden == 100
    assert SwiGLU(64).hidden == 176  # round(170.67) = 171 -> 176
    assert SwiGLU(48).hidden == 128  # 8/3 * 48 = 128 exactly
    assert SwiGLU(64, hidden=100).hidden == 100
    assert all(swiglu_hidden(d) % 8 == 0 and swiglu_hidden(d) >= 8 * d / 3 for d in range(1, 300))
    with pytest.raises(ConfigError):
        MLP(8, hidden=0)
    with pytest.raises(ConfigError):
        SwiGLU(8, dropout=1.0)


@pytest.mark.parametrize("d", [32, 64, 128, 256, 512])
def test_swiglu_parameter_count_matches_mlp(d):
    """Bias-free count: SwiGLU's 3 d h (default h) vs the expansion-4 MLP's 2 d (4d) = 8 d^2."""
    n_swiglu = sum(p.numel() for p in SwiGLU(d, bias=False).parameters())
    n_mlp = sum(p.numel() for p in MLP(d, expansion=4.0, bias=False).parameters())
    assert n_mlp == 8 * d * d
    assert abs(n_swiglu / n_mlp - 1) <= 0.05


@pytest.mark.parametrize("name", NAMES)
def test_init_statistics(name):
    """Each linear map: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight std 1/sqrt(3 fan_in)."""
    torch.manual_seed(5)
    block = layerlab.build("channel", name, 128, bias=True)
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    for lin in linears:
        bound = lin.in_features ** -0.5
        w = lin.weight
        assert abs(w.std().item() * (3 * lin.in_features) ** 0.5 - 1) < 0.02  # n >= 32768: SE < 0.4%
        assert w.abs().max() <= bound
        assert lin.bias.abs().max() <= bound and torch.count_nonzero(lin.bias) == lin.bias.numel()


def test_dropout_on_output():
    block = MLP(16, dropout=0.5).train()
    torch.manual_seed(6)
    y = block(torch.randn(64, 16))
    assert 0.3 < (y == 0).float().mean() < 0.7
    block.eval()
    x = torch.randn(4, 16)
    assert torch.equal(block(x), block(x))


def test_mlp_activation_option_builds_a_registered_activation():
    torch.manual_seed(7)
    block = MLP(6, hidden=10, activation="relu", dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    expected = torch.relu(x @ block.fc1.weight.T + block.fc1.bias) @ block.fc2.weight.T + block.fc2.bias
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-14)
    assert "activation='relu'" in repr(block)
    with pytest.raises(layerlab.errors.UnknownNameError, match="gelu"):
        MLP(6, activation="gelux")
    with pytest.raises(ConfigError, match="approximate"):
        MLP(6, activation_options={"approximat": "tanh"})
    tanh = MLP(6, hidden=10, activation_options={"approximate": "tanh"}, dtype=torch.float64)
    tanh.load_state_dict(block.state_dict())
    assert not torch.allclose(tanh(x), block(x))


def test_selu_mlp_uses_lecun_normal_init():
    torch.manual_seed(8)
    block = MLP(256, activation="selu")
    w = block.fc1.weight
    assert abs(w.var().item() * 256 - 1) < 0.02  # Var w = 1/fan_in (n = 262144: SE ~0.3%)
    assert block.fc1.bias.abs().max() == 0
    assert abs(MLP(256).fc1.weight.var().item() * 3 * 256 - 1) < 0.02  # the default: 1/(3 fan_in)
