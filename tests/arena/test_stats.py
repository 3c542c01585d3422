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


def test_paired_difference_ci_by_hand():
    from layerlab.arena.stats import paired_difference_ci

    # differences 1, 3, 2: mean 2, sd 1, half = t_{0.975,2} / sqrt(3)
    d, half = paired_difference_ci([5.0, 7.0, 6.0], [4.0, 4.0, 4.0])
    assert d == pytest.approx(2.0) and half == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    with pytest.raises(ValueError, match="equally many"):
        paired_difference_ci([1.0], [1.0, 2.0])


def test_welch_difference_ci_by_hand():
    from layerlab.arena.stats import welch_difference_ci

    # a: mean 2, s^2 = 1, n 3 -> se_a^2 = 1/3; b: mean 0, s^2 = 4, n 2 -> se_b^2 = 2
    d, half, df = welch_difference_ci([1.0, 2.0, 3.0], [-np_sqrt2(), np_sqrt2()])
    se2 = 1 / 3 + 2
    want_df = se2**2 / ((1 / 3) ** 2 / 2 + 2**2 / 1)
    assert d == pytest.approx(2.0) and df == pytest.approx(want_df)
    assert 1 < df < 2 and half == pytest.approx(12.706 * math.sqrt(se2), rel=1e-4)  # floor(df) = 1: the wide side
    assert math.isnan(welch_difference_ci([1.0], [1.0, 2.0])[1])
    assert welch_difference_ci([1.0, 1.0], [0.0, 0.0])[:2] == (1.0, 0.0)


def np_sqrt2() -> float:
    return math.sqrt(2.0)
