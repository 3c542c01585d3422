"""The end-to-end update measurement (Arora, Cohen & Hazan 2018, arXiv:1802.06509)."""
from __future__ import annotations

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
