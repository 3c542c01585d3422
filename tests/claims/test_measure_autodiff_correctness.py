"""The AD-correctness measurement (Lee, Park & Aiken 2023, arXiv:2301.13370)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-8), ("float32", 1e-5)])
def test_ad_correct_where_differentiable_and_clarke_on_kinks(dtype, tol):
    out = get_measure("autodiff_correctness")(0, hidden=6, in_features=3, examples=4, trials=6, dtype=dtype)
    assert out["differentiable_gap"] < tol and out["clarke_gap"] < tol
    assert out["kink_jump"] > 1e-4  # the placed parameters are real non-differentiable points
    assert out["random_kink_fraction"] == 0.0
    assert out["no_bias_ad_error"] == 1.0  # without biases AD can be wrong where f is differentiable


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="dtype"):
        get_measure("autodiff_correctness")(0, dtype="float16")
