"""The bandlimited random-features measurement (arXiv:2008.08427)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError

_SMALL = dict(omegas=[4.0, 8.0], widths=[50, 200], n=256, bisections=3)


def test_floor_below_the_frequency_and_decay_above_it():
    m = get_measure("bandlimited_random_features")
    out = m(0, **_SMALL)
    assert out["floor_gap"] < 0.2 and abs(out["floor_trend"] - 1) < 0.05  # error ~0.85-0.95 whatever the width
    assert out["high_error"] < 0.01
    assert out["bstar_8"] > out["bstar_4"]
    no_floor = m(0, **{**_SMALL, "low_ratio": 1.0, "high_ratio": 4.0})  # B = omega: the floor is gone
    assert no_floor["floor_gap"] > 0.9


def test_bad_options():
    with pytest.raises(ConfigError, match="low_ratio < high_ratio"):
        get_measure("bandlimited_random_features")(0, low_ratio=3.0, high_ratio=2.0)
