"""The grokking-delay measurement (Kumar et al. 2023, arXiv:2310.06110)."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.grokking_lazy_rich import first_below, grokking_run, single_index_data
from layerlab.errors import ConfigError

TINY = dict(dim=6, n_train=40, n_test=50, width=32, lr=1.0, every=5, drop=0.1)


def test_single_index_targets_are_standardized_he2():
    beta = torch.zeros(5, dtype=torch.float64)
    beta[2] = 1.0
    x, y = single_index_data(200_000, 5, beta, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, (x[:, 2] ** 2 - 1) / math.sqrt(2))
    assert float(y.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(y.var()) == pytest.approx(1.0, abs=0.02)


def test_first_below():
    assert first_below([3.0, 2.0, 0.5, 0.05], [0, 10, 20, 30], 0.5) == 20
    assert first_below([3.0, 2.0], [0, 10], 0.5) is None


def test_centred_model_starts_at_zero_and_larger_alpha_is_lazier():
    start = grokking_run(0, 1.0, max_steps=0, **TINY)  # h = 0 at step 0, so MSE = mean y^2
    beta = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    torch.randn(6, generator=g, dtype=torch.float64)  # the same draws as the run: beta, then the data
    _, y = single_index_data(40, 6, beta / beta.norm(), g)
    assert start["final_train"] == pytest.approx(float(y.square().mean()), rel=1e-12)
    assert start["ntk_change_end"] == 0.0
    rich = grokking_run(0, 0.25, max_steps=60, **TINY)
    lazy = grokking_run(0, 4.0, max_steps=60, **TINY)
    # the same function-space speed, parameters moving O(1/alpha): the kernel moves far less
    assert lazy["ntk_change_end"] < 0.3 * rich["ntk_change_end"]


def test_bad_alphas_are_config_errors():
    with pytest.raises(ConfigError, match="two increasing"):
        get_measure("grokking_alpha_delay")(0, alphas=[2.0, 1.0])
