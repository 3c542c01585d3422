"""The AP measurement: the deficit is the stated mean difference and the nonzero fraction matches the schedule."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_measure_small_budget():
    m = get_measure("activating_while_pruning_digits")
    w = 16
    r = m(0, width=w, depth=1, steps=40, schedule=[0.5, 0.8], levels=[0.5, 0.8], finetune_steps=5)
    d = sum(r[f"acc_plain_{s}"] - r[f"acc_ap_{s}"] for s in (0.5, 0.8)) / 2
    assert r["deficit"] == pytest.approx(d, abs=1e-12)
    weights, biases = 64 * w + w * 10, w + 10
    assert r["nonzero"] == pytest.approx((weights - round(0.8 * weights) + biases) / (weights + biases),
                                         abs=1.5 / (weights + biases))
    assert 0.0 <= r["dnr_plain_0.8"] <= 1.0
    with pytest.raises(ConfigError, match="levels"):
        m(0, width=w, steps=5, schedule=[0.5], levels=[0.9])
