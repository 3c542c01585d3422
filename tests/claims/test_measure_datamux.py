"""The DataMUX measurement (arXiv:2202.09318): drops and speed-ups are the differences and ratios of
the reported accuracies and throughputs, parameters counted on the models, N = 1 the plain MLP."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_figures_are_consistent():
    w = 16
    out = get_measure("datamux_digits")(0, width=w, depth=2, steps=30, ns=[1, 3], card_n=3,
                                        throughput_examples=64, repeats=1)
    assert out["acc_drop"] == pytest.approx(out["acc_n1"] - out["acc_n3"], abs=1e-12)
    assert out["speedup_n3"] == pytest.approx(out["throughput_n3"] / out["throughput_n1"])
    assert out["acc_drop_n1"] == 0.0 and out["speedup_n1"] == 1.0
    plain = 64 * w + w + w * w + w + w * 10 + 10  # relu_mlp(64, w, 2, 10)
    assert out["params_n1"] == plain
    assert out["params_n3"] == plain + 3 * (w * w + w)  # one demux head per index


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="include 1"):
        get_measure("datamux_digits")(0, ns=[2, 4], card_n=2)
    with pytest.raises(ConfigError, match="mux"):
        get_measure("datamux_digits")(0, mux="learned")
