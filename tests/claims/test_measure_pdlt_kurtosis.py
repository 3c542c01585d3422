"""The PDLT kurtosis measurement (arXiv:2106.10165): Monte Carlo over random networks against the
exact finite-width kurtosis; it resolves the exact form from the book's first-order term."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.pdlt_kurtosis import sample_kurtosis
from layerlab.errors import ConfigError
from layerlab.lens.theory.finite_width import excess_kurtosis, leading_order_kurtosis


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_monte_carlo_agrees_with_exact_form_within_its_error(activation):
    out = get_measure("pdlt_kurtosis")(0, activation=activation, width=8, depth=4, networks=20_000, in_features=3)
    assert out["z_max"] < 4.5  # every layer within 4.5 standard errors
    assert abs(out["first_layer_kurtosis"]) < 0.06  # z^(1) is exactly Gaussian (SE ~0.015 here)
    assert out["error"] < 5 * out["relative_se"]
    # at width 8 the book's first-order term is 21% (linear) / 43% (ReLU) off; the estimate sees it
    assert out["leading_order_error"] > 5 * out["relative_se"]


def test_standard_error_is_honest():
    # Over independent repeats, the spread of kappa_hat matches the reported standard error.
    reps = [sample_kurtosis(4000, 3, 3, "relu", torch.Generator().manual_seed(s), in_features=2) for s in range(24)]
    k = torch.stack([r[0][-1] for r in reps])
    se = torch.stack([r[1][-1] for r in reps]).mean()
    assert 0.6 < (k.std() / se).item() < 1.6
    exact = excess_kurtosis(3, 3, "relu").item()
    assert abs(k.mean().item() - exact) < 4 * k.std().item() / 24**0.5
    assert abs(leading_order_kurtosis(3, 3, "relu").item() - exact) > 5 * k.std().item() / 24**0.5


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="depth >= 2"):
        get_measure("pdlt_kurtosis")(0, depth=1)
    with pytest.raises(ConfigError, match="tanh"):
        get_measure("pdlt_kurtosis")(0, activation="tanh", networks=100)
