"""The feature-contamination measurement (arXiv:2406.03345)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_relu_network_is_contaminated_and_the_linear_model_is_not():
    out = get_measure("feature_contamination")(0, core_dim=4, bg_dim=8, input_dim=16, hidden=16, pairs=60, steps=300,
                                               n_test=500)
    assert out["contamination_relu"] > 0.2 and out["error"] < 0.1
    assert out["relu_train_loss"] < 0.1 and out["linear_id_accuracy"] == 1.0 and out["linear_ood_retention"] == 1.0
    assert out["relu_ood_loss"] > 2 * out["relu_id_loss"]


def test_bad_options():
    with pytest.raises(ConfigError, match="input_dim"):
        get_measure("feature_contamination")(0, core_dim=10, bg_dim=10, input_dim=16)
