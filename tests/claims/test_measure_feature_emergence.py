"""Li_2 measurements (arXiv:2509.21519): ascent on E ends on Fourier features; training concentrates on them."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_energy_ascent_reaches_the_closed_form_maximum_and_a_single_step_does_not():
    m = get_measure("li2_energy_maxima")
    done = m(0, M=11, nodes=4, steps=100)
    assert done["error"] < 1e-10 and done["ipr_min"] > 1 - 1e-10 and done["same_frequency"] == 1.0
    assert done["energy_start_mean"] < 0.5 and done["ipr_start_mean"] < 0.5  # random starts are far from it
    early = m(0, M=11, nodes=4, steps=1)
    assert early["error"] > 0.1


def test_training_moves_hidden_nodes_towards_single_frequencies():
    m = get_measure("li2_trained_fourier")
    out = m(0, M=11, train_fraction=0.8, hidden=24, steps=800)
    assert out["error"] == pytest.approx(1.0 - out["ipr_weighted"], abs=1e-15)
    assert out["train_acc"] == 1.0
    assert out["ipr_weighted"] > out["ipr_init_mean"] + 0.2  # measured 0.62 against 0.26 at initialization
    untrained = m(0, M=11, train_fraction=0.8, hidden=24, steps=1)
    assert untrained["ipr_weighted"] < 0.35


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="odd integer M"):
        get_measure("li2_energy_maxima")(0, M=10)
    with pytest.raises(ConfigError, match="train_fraction"):
        get_measure("li2_trained_fourier")(0, train_fraction=1.0)
