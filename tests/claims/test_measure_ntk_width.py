"""The NTK width-drift measurement (Jacot et al. 2018, arXiv:1806.07572)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.ntk_width import loglog_slope, sphere_regression
from layerlab.errors import ConfigError


def test_loglog_slope_recovers_a_power_law():
    x = torch.tensor([3.0, 10.0, 40.0, 500.0], dtype=torch.float64)
    assert loglog_slope(x, 2.5 * x ** -0.7) == pytest.approx(-0.7, abs=1e-12)


def test_sphere_regression_inputs_are_unit_vectors():
    x, y = sphere_regression(50, 6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.norm(dim=1), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(y, 6 ** 0.5 * x[:, 0] + 6 * x[:, 1] * x[:, 2])


def test_drift_is_linear_in_a_small_step_and_shrinks_with_width():
    m = get_measure("ntk_width_drift")
    small = m(0, widths=[16, 256], n_train=8, lr=1e-4, steps=1)
    double = m(0, widths=[16, 256], n_train=8, lr=2e-4, steps=1)
    for w in (16, 256):  # one step: the kernel moves by O(lr), so doubling lr doubles the change
        assert double[f"change@{w}"] / small[f"change@{w}"] == pytest.approx(2.0, rel=1e-2)
    trained = m(0, widths=[16, 256], n_train=8, lr=1.0, steps=50)
    assert trained["change@256"] < trained["change@16"]
    assert trained["excess"] == pytest.approx(trained["slope"] + 0.5)


def test_bad_widths_are_config_errors():
    with pytest.raises(ConfigError, match="two distinct widths"):
        get_measure("ntk_width_drift")(0, widths=[64])
