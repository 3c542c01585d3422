"""The AutoSparse measurement: interpolation at the target sparsity is exact on known points; the deficit
is the stated difference."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.autosparse import at_target
from layerlab.errors import ConfigError


def test_at_target():
    assert at_target([(0.9, 0.5), (0.7, 0.9)], 0.8) == (pytest.approx(0.7, abs=1e-12), True)
    assert at_target([(0.5, 0.9), (0.6, 0.8)], 0.8) == (0.8, False)


def test_measure_small_budget():
    m = get_measure("autosparse_digits")
    r = m(0, width=16, depth=1, steps=20, lams=[0.1, 1.0])
    assert r["deficit"] == pytest.approx(max(r["acc_ste"], r["acc_zero"]) - r["acc_ga"], abs=1e-12)
    assert 0.0 <= r["sparsity_ga_1.0"] <= 1.0
    with pytest.raises(ConfigError, match="target"):
        m(0, width=16, steps=5, target=1.5)
