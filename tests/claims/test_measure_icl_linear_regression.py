"""The ICL linear-regression measurement (arXiv:2306.09927): a trained LSA layer reaches Gamma* and R*."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_trained_layer_reaches_the_global_minimum_and_an_untrained_one_does_not():
    m = get_measure("icl_linear_regression")
    out = m(0, dim=2, context=6, spectrum=[1.5, 0.5], steps=150, batch=128, lr=0.03, n_test=4000)
    assert out["gamma_distance"] < 0.06
    assert abs(out["gamma_block_risk"] - out["predicted_risk"]) / out["predicted_risk"] < 0.01
    # on the same test prompts the trained layer and Gamma* itself score alike (the test set's sampling
    # error, ~2.5% at 4000 prompts, cancels); both are within their sampling error of R*
    assert abs(out["risk"] - out["gamma_star_test_risk"]) / out["predicted_risk"] < 0.01
    assert out["error"] < 0.1 and out["test_error_of_gamma_star"] < 0.1
    early = m(0, dim=2, context=6, spectrum=[1.5, 0.5], steps=1, batch=16, lr=1e-4, n_test=4000)
    assert early["error"] > 0.5 and early["gamma_distance"] > 0.5


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="sigma > 0"):
        get_measure("icl_linear_regression")(0, sigma=0.0)
