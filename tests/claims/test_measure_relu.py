"""The stepped sigmoid measurement: exact sums on small cases and the midpoint-rule error size."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.relu import stepped_sigmoid
from layerlab.errors import ConfigError


def test_stepped_sigmoid_is_the_plain_sum():
    x = torch.tensor([0.3], dtype=torch.float64)
    expected = sum(1 / (1 + math.exp(-(0.3 - i + 0.5))) for i in range(1, 4))
    assert abs(stepped_sigmoid(x, 3).item() - expected) < 1e-15


def test_error_at_zero_is_the_midpoint_rule_size():
    # at x = 0 the midpoint error is about sigma'(0)/24 = 1/96; too few copies would be far off
    x = torch.zeros(1, dtype=torch.float64)
    err = abs(stepped_sigmoid(x, 200).item() - math.log(2))
    assert 0.002 < err < 0.0104 * 1.2
    out = get_measure("stepped_sigmoid_softplus")(0, n_units=60, x_max=10.0, n_points=256)
    assert out["error"] < 0.0125
    assert abs(out["relu_gap"] - math.log(2)) < 0.05  # largest near x = 0


def test_truncated_sum_is_refused():
    with pytest.raises(ConfigError, match="n_units"):
        get_measure("stepped_sigmoid_softplus")(0, n_units=20, x_max=10.0)
