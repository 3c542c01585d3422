"""SpikeGPT's spiking RWKV (arXiv:2302.13939): WKV parallel form = its definition = the O(1)-state
recurrence (also with huge keys), binary spikes forward, arctan surrogate backward, the LIF by hand."""
import math

import pytest
import torch

from layerlab.blocks.mixers.spikegpt import SpikingRWKV, spike
from layerlab.errors import ConfigError

from .contract import check_forms_agree, check_step_matches_forward


def wkv_by_definition(block, x):
    """wkv_t = (sum_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (same without v), then W_o(sigmoid(r) wkv)."""
    B, L, D = x.shape
    x_prev = torch.cat([torch.zeros(B, 1, D, dtype=x.dtype), x[:, :-1]], 1)
    r, k, v = block._rkv(x, x_prev)
    w, u = torch.exp(block.time_decay), block.time_first
    out = []
    for t in range(L):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        out.append(block.w_o(torch.sigmoid(r[:, t]) * num / den))
    return torch.stack(out, 1)


def test_parallel_and_recurrence_equal_the_definition():
    torch.manual_seed(0)
    block = SpikingRWKV(6, spiking=False, dtype=torch.float64)
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    want = wkv_by_definition(block, x)
    for mode in ("parallel", "reference"):
        assert ((block(x, mode) - want).norm() / want.norm()).item() < 1e-12


def test_recurrence_is_stable_with_huge_keys():
    torch.manual_seed(1)
    block = SpikingRWKV(4, spiking=False, dtype=torch.float64)
    with torch.no_grad():
        block.w_k.weight.mul_(200.0)  # keys of order 100s: e^{k} overflows without the running max
    x = torch.randn(1, 20, 4, dtype=torch.float64)
    a, b = block(x, "parallel"), block(x, "reference")
    assert torch.isfinite(a).all() and ((a - b).norm() / a.norm()).item() < 1e-10


@pytest.mark.parametrize("mode", ["parallel", "reference"])
def test_spikes_are_binary_and_some_fire(mode):
    torch.manual_seed(2)
    block = SpikingRWKV(16)
    y = block(torch.randn(3, 20, 16), mode)
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < y.mean().item() < 0.6


def test_spiking_forms_agree_and_step():
    torch.manual_seed(3)
    for dtype in (torch.float64, torch.float32):
        block = SpikingRWKV(8, threshold=0.05, dtype=dtype)
        check_forms_agree(block, 2, 11)
    check_step_matches_forward(block.double(), 2, 11)


def test_surrogate_gradient():
    x = torch.tensor([-1.0, -0.1, 0.0, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    s = spike(x, 2.0)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    s.sum().backward()
    assert torch.allclose(x.grad, 1.0 / (1 + (math.pi * x.detach()) ** 2), rtol=1e-14)


def test_lif_by_hand():
    """beta = 0.5, threshold 0.1: U_t = H + 0.5 (y - H); a spike resets H to 0."""
    block = SpikingRWKV(1, dtype=torch.float64)
    H = torch.zeros(1, 1, dtype=torch.float64)
    spikes, potentials = [], []
    for y in (0.08, 0.08, 0.3, 0.0, 0.15):
        S, H = block._lif(torch.full((1, 1), y, dtype=torch.float64), H)
        spikes.append(S.item())
        potentials.append(H.item())
    # U: 0.04, 0.06, 0.18 (spike, H = 0), 0.0, 0.075
    assert spikes == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert potentials == pytest.approx([0.04, 0.06, 0.0, 0.0, 0.075], abs=1e-15)


def test_gradients_reach_every_parameter_through_spikes():
    torch.manual_seed(4)
    block = SpikingRWKV(8)
    block(torch.randn(2, 10, 8)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_is_constant_size():
    block = SpikingRWKV(8)
    assert block.state_size == 5 * 8  # last input, numerator, denominator, max exponent, membrane


def test_options_are_checked():
    with pytest.raises(ConfigError, match="beta"):
        SpikingRWKV(4, beta=0.0)
    with pytest.raises(ConfigError, match="threshold"):
        SpikingRWKV(4, threshold=-1.0)
    with pytest.raises(ConfigError, match="surrogate_alpha"):
        SpikingRWKV(4, surrogate_alpha=0.0)
