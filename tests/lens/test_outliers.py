"""Outlier metrics (Beyond Outliers, 2509.23500): max-to-mean ratio and kurtosis against closed forms,
per-layer reads of weights and inputs, side-effect free."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens.outliers import activation_outliers, kurtosis, max_to_mean_ratio, tensor_outliers, weight_outliers


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_mmr_exact_values(n):
    one_hot = torch.zeros(n, dtype=torch.float64)
    one_hot[n // 2] = -3.0
    assert float(max_to_mean_ratio(one_hot)) == pytest.approx(n, rel=1e-15)
    assert float(max_to_mean_ratio(torch.full((n,), -2.5))) == pytest.approx(1.0, rel=1e-15)
    ramp = torch.arange(1, n + 1, dtype=torch.float64)  # max n, mean (n+1)/2
    assert float(max_to_mean_ratio(ramp)) == pytest.approx(2 * n / (n + 1), rel=1e-15)


@pytest.mark.parametrize("n,k", [(10, 1), (10, 3), (50, 25), (7, 6)])
def test_kurtosis_of_spikes_is_the_bernoulli_value(n, k):
    x = torch.zeros(n, dtype=torch.float64)
    x[:k] = 4.0
    p = k / n
    assert float(kurtosis(x)) == pytest.approx(1 / (p * (1 - p)) - 3, rel=1e-12)
    assert float(kurtosis(x, excess=True)) == pytest.approx(1 / (p * (1 - p)) - 6, rel=1e-12, abs=1e-12)
    two_point = torch.tensor([1.5, -1.5] * n, dtype=torch.float64)
    assert float(kurtosis(two_point)) == pytest.approx(1.0, rel=1e-12)


def test_kurtosis_of_distributions_within_sampling_error():
    g = torch.Generator().manual_seed(0)
    n = 400_000
    gauss = torch.randn(n, generator=g, dtype=torch.float64) * 3 + 1
    uniform = torch.rand(n, generator=g, dtype=torch.float64)
    laplace = -torch.log(torch.rand(n, generator=g, dtype=torch.float64)) * torch.sign(torch.rand(n, generator=g) - 0.5)
    # 4 standard errors of the sample kurtosis (leading term sqrt((m8 - m4^2)/n) / m2^2): Gaussian
    # sqrt(96/n), uniform sqrt(5.76/n), Laplace(0, 1) sqrt(2484/n) (m2 = 2, m4 = 24, m8 = 8!)
    assert float(kurtosis(gauss)) == pytest.approx(3.0, abs=4 * math.sqrt(96 / n))
    assert float(kurtosis(uniform)) == pytest.approx(1.8, abs=4 * math.sqrt(5.76 / n))
    assert float(kurtosis(laplace)) == pytest.approx(6.0, abs=4 * math.sqrt(2484 / n))


def test_reductions_along_a_dimension_equal_row_by_row():
    w = torch.randn(5, 11, generator=torch.Generator().manual_seed(1))
    rows_mmr, rows_k = max_to_mean_ratio(w, dim=1), kurtosis(w, dim=1)
    for i in range(5):
        assert float(rows_mmr[i]) == pytest.approx(float(max_to_mean_ratio(w[i])), rel=1e-6)
        assert float(rows_k[i]) == pytest.approx(float(kurtosis(w[i])), rel=1e-6)
    t = tensor_outliers(w)
    assert t["row_mmr"] == pytest.approx(float(rows_mmr.mean()), rel=1e-6)
    assert t["kurtosis"] == pytest.approx(float(kurtosis(w.reshape(-1))), rel=1e-6)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))


def test_weight_and_activation_outliers_read_each_linear_and_change_nothing():
    net = _net()
    net.train()
    net[0].weight.grad = torch.ones_like(net[0].weight)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(2))
    rng = torch.get_rng_state()
    w = weight_outliers(net)
    assert set(w) == {"0", "3", "mean"}
    assert w["3"]["mmr"] == pytest.approx(float(max_to_mean_ratio(net[3].weight)), rel=1e-6)
    assert w["mean"]["kurtosis"] == pytest.approx((w["0"]["kurtosis"] + w["3"]["kurtosis"]) / 2, rel=1e-12)
    a = activation_outliers(net, x)
    hidden = torch.relu(net[0](x)).detach()  # eval mode: dropout off
    assert a["0"]["mmr"] == pytest.approx(float(max_to_mean_ratio(x)), rel=1e-6)
    assert a["3"]["kurtosis"] == pytest.approx(float(kurtosis(hidden)), rel=1e-6)
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(net[0].weight.grad, torch.ones(6, 4))
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_pre_hooks for m in net.modules())  # hooks removed


def test_bad_input():
    with pytest.raises(ConfigError, match="floating-point"):
        kurtosis(torch.arange(5))
    with pytest.raises(ConfigError, match="at least one entry"):
        max_to_mean_ratio(torch.zeros(0))
    with pytest.raises(ConfigError, match="no nn.Linear"):
        weight_outliers(nn.Sequential(nn.ReLU()))
