"""The magnitude-pruning measurement: the errors are the stated differences and the measured nonzero
fraction matches the last sparsity of the schedule (weights) plus the biases."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_measure_small_budget():
    m = get_measure("magnitude_pruning_digits")
    width = 16
    r = m(0, width=width, steps=60, schedule=[0.5, 0.75], finetune_steps=10)
    assert r["error"] == pytest.approx(r["acc_dense"] - r["acc_pruned"], abs=1e-12)
    assert r["error_oneshot"] == pytest.approx(r["acc_dense"] - r["acc_oneshot"], abs=1e-12)
    weights, biases = 64 * width + width * width + width * 10, width + width + 10
    kept_weights = weights - round(0.75 * weights)
    # biases are never pruned (a bias that trained to exactly 0 would lower this by 1 / total)
    assert r["nonzero"] == pytest.approx((kept_weights + biases) / (weights + biases), abs=1.5 / (weights + biases))
    with pytest.raises(ConfigError, match="method"):
        m(0, width=width, steps=5, method="random")
