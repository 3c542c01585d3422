"""The convergent-learning sparse-prediction measurement (Li et al. 2016, arXiv:1511.07543)."""
import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_sparse_prediction_error_ratio_and_its_context():
    out = get_measure("convergent_sparse_prediction")(0, width=16, steps=20)
    assert out["error"] == pytest.approx(out["sparse_mse"] / out["one_to_one_mse"], rel=1e-12)
    # along the lasso path the fit error does not decrease as the penalty grows
    assert out["error_small_lam"] <= out["error"] + 1e-9 <= out["error_large_lam"] + 2e-9
    assert 1 <= out["units"] <= 16


def test_rejects_a_layer_that_does_not_exist():
    with pytest.raises(ConfigError, match="layer < depth"):
        get_measure("convergent_sparse_prediction")(0, layer=2)
