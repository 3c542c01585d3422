"""The end-to-end update measurement (Arora, Cohen & Hazan 2018, arXiv:1802.06509)."""
from __future__ import annotations

import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_order_two_for_the_paper_update_and_one_for_plain_gradient_descent():
    out = get_measure("implicit_acceleration_update")(0, depth=3, lr=1e-4)
    assert out["balance_violation"] < 1e-12
    assert out["error"] < 0.05 and out["relative_gap"] < 0.02
    assert abs(out["naive_order"] - 1) < 0.1 and out["naive_relative_gap"] > 0.5


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="p >= 1"):
        get_measure("implicit_acceleration_update")(0, p=0.5)


def test_lp_training_loop_is_gradient_descent_and_the_comparison_is_recorded():
    import torch

    from layerlab.claims.measures.implicit_acceleration import _final_loss
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    w = torch.randn(1, 5, generator=g, dtype=torch.float64)
    v = w.reshape(-1).clone()
    for _ in range(7):  # l_4 loss mean |r|^4: gradient (4/n) X^T r^3
        r = x @ v - y
        v = v - 0.01 * 4 * x.T @ r**3 / 30
    assert _final_loss([w], x, y, 4.0, 0.01, 7) == pytest.approx(float((x @ v - y).pow(4).mean()), rel=1e-12)
    assert _final_loss([w], x, y, 4.0, 50.0, 50) == float("inf")  # a diverging step is recorded as inf
    out = get_measure("implicit_acceleration_lp")(0, steps=100, lrs=[0.01, 0.03], samples=60, in_features=8)
    assert max(out["deep_loss"], out["shallow_loss"]) < out["initial_loss"]
    assert out["log_loss_ratio"] == pytest.approx(math.log(out["deep_loss"] / out["shallow_loss"]), rel=1e-12)
    with pytest.raises(ConfigError, match="depth >= 2"):
        get_measure("implicit_acceleration_lp")(0, depth=1)
