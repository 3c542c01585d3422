"""compress.savings: exact counts of nonzero parameters, bits and bytes on hand-built models, the
declared widths checked against the stored values, the forward's peak memory, and the interleaved
wall-time ratio."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.compress.savings import measure_cost, measure_savings, time_pair
from layerlab.errors import ConfigError


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_counts_parameters_nonzeros_bits_and_bytes_exactly():
    net = _mlp()
    with torch.no_grad():
        net[0].weight[0, :3] = 0.0
        net[0].bias[1] = 0.0
    cost = measure_cost(net, torch.randn(5, 4))
    n = 4 * 3 + 3 + 3 * 2 + 2  # 23 entries
    assert (cost.params, cost.nonzero_params) == (n, n - 4)
    assert cost.bits == 32 * n and cost.model_bytes == 4 * n
    assert cost.unused == ()


class _Odd(nn.Module):
    """A tied weight, an unused layer, a used and an unused buffer, a mask and a non-persistent cache."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6, bias=False)
        self.b = nn.Linear(6, 6, bias=False)
        self.b.weight = self.a.weight  # tied: counted once
        self.unused = nn.Linear(6, 100)
        self.register_buffer("shift", torch.tensor([0.0, 1.0, 2.0]))  # persistent, used: a weight-like buffer
        self.register_buffer("never", torch.ones(50))  # persistent, never read
        self.register_buffer("mask", torch.rand(6, 6, generator=torch.Generator().manual_seed(0)) > 0.5)
        self.register_buffer("cache", torch.ones(1000), persistent=False)  # not stored: recomputed

    def forward(self, x):
        w = self.a.weight * self.mask
        return self.b(x @ w.T)[:, :3] + self.shift + self.cache[:3]


def test_tied_unused_buffers_and_masks():
    net = _Odd()
    cost = measure_cost(net, torch.randn(2, 6))
    assert set(cost.unused) == {"unused.weight", "unused.bias", "never"}
    assert cost.params == 36 + 3  # the tied weight once, the used buffer; the mask is not a weight
    assert cost.nonzero_params == int((net.a.weight != 0).sum()) + 2  # shift holds one zero
    assert cost.bits == 32 * 39 + 1 * 36  # a mask is one bit per entry
    assert cost.model_bytes == 4 * 39 + 36  # as PyTorch holds it: a bool takes a byte


class _QLinear(nn.Module):
    """Integer codes in an int8 buffer, one float scale per output row."""

    bits_per_weight = 4
    quantized_tensors = ("codes",)

    def __init__(self, codes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("codes", codes.to(torch.int8))
        self.register_buffer("scale", torch.full((codes.shape[0],), 0.1))
        self.bias = nn.Parameter(torch.zeros(codes.shape[0]))

    def forward(self, x):
        return nn.functional.linear(x, self.codes.float() * self.scale[:, None], self.bias)


def test_declared_bits_count_at_their_width_and_scales_at_theirs():
    codes = torch.arange(-8, 8).reshape(4, 4)  # 16 codes: exactly 4 bits
    cost = measure_cost(_QLinear(codes), torch.randn(3, 4))
    assert cost.bits == 16 * 4 + 4 * 32 + 4 * 32
    assert cost.model_bytes == 16 * 1 + 4 * 4 + 4 * 4
    assert cost.params == 24 and cost.nonzero_params == 15 + 4  # one zero code, the zero bias
    codes[3, 3] = 8  # -8..8: 17 codes do not fit 4 bits
    with pytest.raises(ConfigError, match=r"'codes' is declared at bits_per_weight = 4.*spanning 17 values"):
        measure_cost(_QLinear(codes), torch.randn(3, 4))


def test_declared_bits_of_float_weights_are_checked_against_distinct_values():
    lin = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(0.5 * torch.randint(-1, 2, (4, 8)).float())  # 3 values: fit 2 bits, no scale
    lin.bits_per_weight = 2
    assert measure_cost(lin, torch.randn(2, 8)).bits == 32 * 2
    with torch.no_grad():
        lin.weight.normal_()
    with pytest.raises(ConfigError, match="32 distinct values for 1 scale"):
        measure_cost(lin, torch.randn(2, 8))


def test_peak_forward_memory_is_the_live_activations():
    x = torch.randn(5, 8)
    # Linear -> ReLU -> Linear: at the ReLU its input (5x16) and output (5x16) live at once
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    assert measure_cost(net, x).activation_bytes == 4 * (2 * 5 * 16)
    # in place: the hidden layer (5x16) and the output (5x4) at most
    inplace = nn.Sequential(nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 4))
    cost = measure_cost(inplace, x)
    assert cost.activation_bytes == 4 * (5 * 16 + 5 * 4)
    assert cost.memory_bytes == cost.model_bytes + cost.activation_bytes == 4 * (8 * 16 + 16 + 16 * 4 + 4) + 400


class _Repeat(nn.Module):
    def __init__(self, layer: nn.Module, times: int) -> None:
        super().__init__()
        self.layer, self.times = layer, times

    def forward(self, x):
        for _ in range(self.times):
            x = torch.tanh(self.layer(x))
        return x


def test_wall_time_ratio_is_measured_interleaved_on_one_thread():
    torch.manual_seed(0)
    layer = nn.Linear(128, 128)
    x = torch.randn(64, 128)
    threads = torch.get_num_threads()
    t1, t16, ratio = time_pair(_Repeat(layer, 1), _Repeat(layer, 16), x, repeats=9, min_time_s=0.005)
    assert torch.get_num_threads() == threads
    assert ratio > 4 and t16 / t1 > 4  # sixteen times the work: not hidden by noise
    same = measure_savings(_Repeat(layer, 4), _Repeat(layer, 4), x, repeats=9, min_time_s=0.005).as_dict()
    assert 1 / 2 < same["time_ratio"] < 2
    assert same["nonzero_ratio"] == same["bits_ratio"] == same["memory_ratio"] == 1.0


def test_savings_ratios_are_the_quotients_of_the_two_measurements():
    dense = _mlp()
    sparse = _mlp()
    with torch.no_grad():
        sparse[0].weight[:, :2] = 0.0  # 6 of 23 entries
    s = measure_savings(dense, sparse, torch.randn(7, 4), repeats=3, min_time_s=0.001).as_dict()
    assert (s["nonzero_params"], s["dense_nonzero_params"]) == (17, 23)
    assert s["nonzero_ratio"] == 17 / 23 and s["bits_ratio"] == 1.0
    assert s["time_ratio"] > 0 and math.isfinite(s["time_ratio"]) and s["time_s"] > 0 and s["dense_time_s"] > 0
    assert "state_ratio" not in s  # not a sequence model


class _Recurrent(nn.Module):
    recurrent = True

    def __init__(self, state: int) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.state_size = state

    def init_state(self, batch):
        return torch.zeros(batch, self.state_size)

    def forward(self, x):
        return self.lin(x)


def test_state_size_of_sequence_models_and_its_ratio():
    s = measure_savings(nn.Sequential(_Recurrent(12)), nn.Sequential(_Recurrent(3)), torch.randn(2, 4), repeats=1,
                        min_time_s=0.0, state_length=16).as_dict()
    assert (s["state_size"], s["dense_state_size"], s["state_ratio"]) == (3, 12, 0.25)
