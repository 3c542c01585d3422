"""The activation-code determinism measurement (He et al. 2021, arXiv:2101.05490)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.hash_encoder import redundancy_ratio, relu_mlp
from layerlab.errors import ConfigError


def test_redundancy_ratio_counts_shared_sign_patterns():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))  # the pattern of x is its sign pattern
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0], [-1.0, 2.0], [-2.0, -2.0], [1.0, 2.0]])
    # 4 distinct inputs (one duplicate dropped), 3 distinct patterns: (+,+) twice, (-,+), (-,-)
    assert redundancy_ratio(net, x) == pytest.approx(1 - 3 / 4)


def test_relu_mlp_shape_and_kaiming_bound():
    net = relu_mlp(64, 32, 2, 10, torch.Generator().manual_seed(0))
    assert net(torch.zeros(3, 64)).shape == (3, 10)
    assert float(net[0].weight.abs().max()) <= (6 / 64) ** 0.5


def test_narrow_networks_share_regions_and_wide_ones_do_not():
    out = get_measure("hash_encoder_determinism")(0, width=64, narrow_width=2, steps=0)
    assert out["error"] < 0.05
    assert out["narrow_error"] > 0.9  # 2 units x 2 layers: at most 16 patterns for 1,257 images
    assert out["distinct_inputs"] > 1200


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="width"):
        get_measure("hash_encoder_determinism")(0, width=0)


def test_categorization_error_is_one_minus_the_worst_code_classifier():
    out = get_measure("hash_encoder_categorization")(0, width=32, steps=30, lam=1e-1)
    worst = min(out["knn_test"], out["kmeans_test"], out["logistic_test"])
    assert out["error"] == pytest.approx(1 - worst, abs=1e-15)
    assert out["units"] == 64 and 0.0 <= worst <= 1.0
    assert out["knn_test"] > 0.5  # 30 steps already give codes far better than chance (0.1)


def test_categorization_rejects_bad_options():
    with pytest.raises(ConfigError, match="lam > 0"):
        get_measure("hash_encoder_categorization")(0, lam=0.0)
