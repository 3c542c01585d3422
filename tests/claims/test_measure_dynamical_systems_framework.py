"""The DSF measurement (arXiv:2405.15731): DSF forms equal layerlab's blocks; S6 with tied rates is normalized attention."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_dsf_forms_equal_the_blocks_and_the_condition_matters():
    out = get_measure("dsf_equivalence")(0, d_model=8, length=6, batch=1, n_heads=2, d_state=4, taylor_orders=[2, 6])
    for name in ("attention", "linear_attention", "mamba", "rglru", "s6_normalized_attention"):
        assert out[name] < 1e-10, name
    assert out["error"] == max(out[k] for k in ("attention", "linear_attention", "mamba", "rglru",
                                                "s6_normalized_attention"))
    assert out["eta_growth_min"] > 1.0
    assert out["untied_mapping_error"] > 1e-2  # without one rate per channel the mapping is wrong
    assert out["taylor_error_p6"] < out["taylor_error_p2"] and out["taylor_error_p2"] > 1e-4


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="n_heads dividing d_model"):
        get_measure("dsf_equivalence")(0, d_model=10, n_heads=4)
