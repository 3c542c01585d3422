"""The width-transfer measurement of the width-scaled AdamW rule (arXiv:2510.15262)."""
import math

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures._fit import refined_argmin
from layerlab.claims.measures.width_scaled_wd import hidden_sigma_max
from layerlab.errors import ConfigError


def test_refined_argmin_recovers_a_parabolas_vertex_and_stops_at_edges():
    xs = [math.log(v) for v in (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)]
    vertex = math.log(3e-3)
    ys = [(x - vertex) ** 2 + 0.5 for x in xs]
    opt, edge = refined_argmin(xs, ys)
    assert opt == pytest.approx(vertex, abs=1e-12) and not edge
    assert refined_argmin(xs, [5, 4, 3, 2, 1]) == (xs[-1], True)
    assert refined_argmin(xs, [1, 2, 3, 4, 5]) == (xs[0], True)
    # a diverged neighbour (inf): the grid point itself
    assert refined_argmin(xs, [3, 1, math.inf, 4, 5]) == (xs[1], False)


def test_hidden_sigma_max_is_the_mean_top_singular_value_of_the_block_matrices():
    model = torch.nn.Module()
    model.layers = torch.nn.Linear(3, 2, bias=False)
    model.head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.layers.weight.copy_(torch.tensor([[3.0, 0, 0], [0, 1.0, 0]]))
    assert hidden_sigma_max(model) == pytest.approx(3.0)  # the head is left out


def test_a_tiny_run_gives_every_quantity_and_checks_options():
    m = get_measure("width_scaled_wd_transfer")
    out = m(0, widths=[8, 16], lrs=[1e-3, 4e-3, 1.6e-2], steps=3, batch_size=8)
    assert out["error"] == pytest.approx(abs(out["scaled_shift"]))
    for k in ("plain_shift", "sigma_max_ratio_plain", "sigma_max_ratio_scaled", "scaled_16_test_accuracy"):
        assert math.isfinite(out[k]), k
    # shifts are in grid steps (factor 4 here): log2 lr differences / 2
    assert out["plain_shift"] == pytest.approx((out["plain_16_log2_lr"] - out["plain_8_log2_lr"]) / 2)
    with pytest.raises(ConfigError, match="geometric grid"):
        m(0, lrs=[1e-3, 2e-3, 5e-3])
    with pytest.raises(ConfigError, match="widths must be"):
        m(0, widths=[64, 32])
    with pytest.raises(ConfigError, match="select must be"):
        m(0, select="test")
