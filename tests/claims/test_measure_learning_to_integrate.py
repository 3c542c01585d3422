"""The RNN integrator outlier measurement (arXiv:2503.18754)."""
from __future__ import annotations

import pytest

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_zero_initial_weights_follow_the_reduced_system_exactly_and_a_large_bulk_does_not():
    m = get_measure("rnn_integrator_outlier")
    kw = dict(n=16, t=20, gamma=0.8, lr=0.01, steps=300, record_every=20)
    exact = m(0, sigma=0.0, **kw)
    assert exact["error"] < 1e-9  # W(0) = 0: the network is its plane reduction (bulk exactly 0)
    assert exact["outlier_final"] == pytest.approx(0.8, abs=0.03) and exact["loss_ratio"] < 0.01
    lazy = m(0, sigma=0.5, **kw)  # a bulk of radius ~0.5: W's leading eigenvalue is no longer the reduced one
    assert lazy["error"] > 0.2 and lazy["loss_ratio"] < 0.01


def test_bad_options():
    with pytest.raises(ConfigError, match="sigma >= 0"):
        get_measure("rnn_integrator_outlier")(0, sigma=-1.0)
