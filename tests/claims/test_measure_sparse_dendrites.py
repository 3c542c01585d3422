"""The SDR false-match measurement (Ahmad & Hawkins 2016, arXiv:1601.00720)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_monte_carlo_matches_eq1_within_sampling_error():
    out = get_measure("sdr_false_match")(0, n=64, a=8, s=12, thresholds=[2, 3, 4], patterns=100_000)
    assert out["z_max"] < 4.5
    assert out["error"] < 5 * out["relative_se_max"]
    # and it is not the binomial (sampling with replacement) tail, which is measurably different here
    assert out["p_theta4"] < 0.8 * 0.0528  # binomial(12, 1/8) tail P(>= 4) = 0.0528; Eq. 1 gives 0.0345


def test_impossible_threshold_is_an_error():
    with pytest.raises(ConfigError, match="probability 0"):
        get_measure("sdr_false_match")(0, n=64, a=8, s=12, thresholds=[9], patterns=10)
