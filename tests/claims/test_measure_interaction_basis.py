"""The LIB-vs-PCA and IB-vs-neuron sparsity measurements (arXiv:2405.10928, 2405.10927) on short runs."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_short_runs_report_consistent_counts_and_degeneracy():
    lib = get_measure("lib_vs_pca_sparsity")(0, width=8, depth=1, steps=20)
    assert lib["ratio"] == pytest.approx(lib["count_lib"] / lib["count_pca"])
    assert lib["count_lib"] == lib["count_lib.0"] + lib["count_lib.1"]
    assert lib["features_lib.1"] <= 8 and lib["features_lib.2"] <= 10
    out = get_measure("ib_vs_neuron_sparsity")(0, width=8, depth=1, steps=20)
    assert out["ratio"] == pytest.approx(out["count_ib"] / out["count_neuron"])
    assert out["features_neuron.1"] == 8
    # a ReLU layer feeding the 10 logits through one Linear: at least 8 - rank(W) = 0 gradient nulls, and
    # every dead unit is an activation null direction
    assert out["activation_null.1"] >= out["dead.1"] >= 0
    with pytest.raises(ConfigError, match="mass"):
        get_measure("lib_vs_pca_sparsity")(0, mass=0.0)
