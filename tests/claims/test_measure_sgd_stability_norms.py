"""The path-norm measurement (arXiv:2305.17490): SGD's minimum obeys eta P <= 1, the identity holds there."""
from __future__ import annotations

import math

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_sgd_minimum_satisfies_the_norm_bound_and_the_trace_identity():
    m = get_measure("sgd_stability_norms")
    out = m(2, n_train=6, width=64, lr_factor=3.0, max_steps=20_000)  # converges in ~1,100 steps
    assert out["converged"] == 1.0
    assert out["norm_excess_init"] > 0  # the start violates the norm bound: SGD had to shrink P
    assert out["norm_excess"] == pytest.approx(out["lr"] * out["path_norm"] - 1.0, rel=1e-12)
    assert out["norm_excess"] < 0
    # at the minimum, the closed form (a parameter norm) equals Hutch++'s trace of the loss Hessian
    assert out["identity_error"] < 1e-3
    assert out["trace_closed"] >= 2 * out["path_norm"]  # AM-GM
    assert out["trace_excess"] <= 0  # SGD's own stability bound, which implies the norm bound


def test_not_converged_is_nan_and_bad_options_fail():
    m = get_measure("sgd_stability_norms")
    out = m(0, n_train=6, width=16, max_steps=1)
    assert out["converged"] == 0.0 and math.isnan(out["norm_excess"]) and math.isnan(out["identity_error"])
    with pytest.raises(ConfigError, match="lr_factor > 0"):
        m(0, lr_factor=0.0)
