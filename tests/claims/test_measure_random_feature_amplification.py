"""The XOR cluster measurement (Frei, Chatterji & Bartlett 2022, arXiv:2202.07626)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.random_feature_amplification import train_linear, xor_clusters
from layerlab.errors import ConfigError


def test_clusters_labels_and_flip_rate():
    x, clean, y = xor_clusters(20000, 10, 5.0, 0.2, torch.Generator().manual_seed(0))
    # the label is +1 exactly when the larger of |x_0|, |x_1| is on axis 0 (radius 5 >> noise 1)
    assert float((torch.where(x[:, 0].abs() > x[:, 1].abs(), 1.0, -1.0) == clean).double().mean()) > 0.999
    assert float((y != clean).double().mean()) == pytest.approx(0.2, abs=0.01)
    assert float(x[:, 2:].std()) == pytest.approx(1.0, abs=0.01)


def test_a_linear_classifier_is_at_chance_on_clean_labels():
    """z and -z share a label, so any sign(w.x + b) errs on 1/2 of the clean distribution."""
    gen = torch.Generator().manual_seed(1)
    x, clean, y = xor_clusters(400, 20, 6.0, 0.1, gen)
    xt, yt, _ = xor_clusters(20000, 20, 6.0, 0.0, gen)
    w, b = train_linear(x, y, 1.0, 300)
    assert float((torch.sign(xt @ w + b) != yt).double().mean()) == pytest.approx(0.5, abs=0.03)
    # and for an arbitrary direction too
    w = torch.randn(20, generator=gen, dtype=torch.float64)
    assert float((torch.sign(xt @ w + 0.3) != yt).double().mean()) == pytest.approx(0.5, abs=0.03)


def test_network_learns_the_xor_and_excess_is_consistent():
    out = get_measure("random_feature_amplification")(0, p=60, n=80, radius=6.0, width=64, steps=150,
                                                      n_test=4000)
    assert out["clean_error"] < 0.15 and out["linear_error"] > 0.4
    assert out["excess"] == pytest.approx(0.8 * out["clean_error"])
    assert out["test_error"] == pytest.approx(0.1 + out["excess"])


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="eta"):
        get_measure("random_feature_amplification")(0, eta=0.5)
