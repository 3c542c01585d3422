"""The imbalanced-UFM measurement (Dang et al. 2023, arXiv:2301.00437)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_gradient_descent_reaches_the_closed_form_and_is_far_from_it_early():
    m = get_measure("imbalanced_ufm_collapse")
    done = m(0, counts=[12, 6, 3], width=5, steps=4000, lr=0.05, lambda_w=2e-2, lambda_h=2e-2)
    assert done["length_error"] < 1e-4 and done["orthogonality"] < 1e-4 and done["nc1"] < 0.05
    assert done["feature_norm_ratio"] > 1.2  # class sizes matter: a balanced geometry would be off
    early = m(0, counts=[12, 6, 3], width=5, steps=20, lr=0.05, lambda_w=2e-2, lambda_h=2e-2)
    assert early["error"] > 0.1


def test_minority_collapse_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="minority collapse"):
        get_measure("imbalanced_ufm_collapse")(0, counts=[100, 1], lambda_w=0.2, lambda_h=0.2, steps=1)
    with pytest.raises(ConfigError, match="width >= classes"):
        get_measure("imbalanced_ufm_collapse")(0, counts=[3, 3, 3], width=2)
