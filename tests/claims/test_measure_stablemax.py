"""softmax_collapse: softmax CE is exactly 0 in float32 past a margin of ~17; StableMax CE is not."""
import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.blocks.activations import log_stablemax
from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError


def test_absorption_threshold_of_float32_softmax_ce():
    """Two classes, gap g: loss = log(1 + e^-g) is exactly 0 in float32 once e^-g < 2^-24 (g > 16.6),
    while float64 still resolves it."""
    t = torch.tensor([0])
    assert F.cross_entropy(torch.tensor([[18.0, 0.0]]), t).item() == 0.0
    assert F.cross_entropy(torch.tensor([[15.0, 0.0]]), t).item() > 0.0
    assert F.cross_entropy(torch.tensor([[18.0, 0.0]], dtype=torch.float64), t).item() == pytest.approx(math.exp(-18), rel=1e-6)
    # StableMax at the same logits: s(18) / (s(18) + s(0)) = 19 / 20
    assert (-log_stablemax(torch.tensor([[18.0, 0.0]]))[0, 0]).item() == pytest.approx(math.log(20 / 19), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_collapses_stablemax_does_not(seed):
    out = get_measure("softmax_collapse")(seed, n=512)
    assert out["softmax_zero"] >= 0.99 and out["error"] == 0.0 and out["stablemax_min_loss"] > 0
    assert 1 < out["scale"] <= 64  # margins of ~3-6 standard logits reach ~17 within a few doublings


def test_no_collapse_on_a_short_grid_is_error_one():
    out = get_measure("softmax_collapse")(0, n=256, max_scale=1.0)
    assert out["error"] == 1.0 and out["softmax_zero"] < 0.99


def test_global_rng_untouched_and_bad_options():
    state = torch.random.get_rng_state()
    get_measure("softmax_collapse")(3, n=64)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ConfigError, match="classes"):
        get_measure("softmax_collapse")(0, classes=1)
