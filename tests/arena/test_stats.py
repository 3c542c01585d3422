import math

import pytest

from layerlab.arena.stats import mean_ci, t_quantile_975


def test_t_quantiles_known_values():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(9) == pytest.approx(2.262, abs=1e-3)
    assert t_quantile_975(60) == pytest.approx(2.000, rel=5e-3)
    assert t_quantile_975(1000) == pytest.approx(1.962, rel=5e-3)


def test_mean_ci_closed_form():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    # sd = 1, n = 3: half = t_{0.975,2} / sqrt(3)
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)


def test_mean_ci_degenerate():
    assert math.isnan(mean_ci([])[0])
    m, h = mean_ci([0.5])
    assert m == 0.5 and math.isnan(h)
    assert mean_ci([2.0, 2.0]) == (2.0, 0.0)
