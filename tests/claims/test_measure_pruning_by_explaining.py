"""The few-shot pruning-by-explaining measurement: the few-shot draw and relabelling are exact, the
kept-parameter fraction is counted from the pruned network, the deficit is the stated combination."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.pruning_by_explaining import few_shot, subset
from layerlab.errors import ConfigError


def test_few_shot_and_subset():
    y = torch.tensor([5, 6, 5, 7, 6, 5, 0, 7, 6])
    x = torch.arange(9.0).view(9, 1)
    xf, yf = few_shot(x, y, (5, 6, 7), 2, torch.Generator().manual_seed(0))
    assert yf.tolist() == [0, 0, 1, 1, 2, 2]
    for label, row in zip(yf.tolist(), xf[:, 0].long().tolist()):
        assert int(y[row]) == (5, 6, 7)[label]          # each example comes from its class
    assert len(set(xf[:, 0].tolist())) == 6             # without replacement
    xs, ys = subset(x, y, (7, 5))
    assert ys.tolist() == [1, 1, 0, 1, 0] and xs[:, 0].tolist() == [0.0, 2.0, 3.0, 5.0, 7.0]
    with pytest.raises(ConfigError, match="fewer than shots"):
        few_shot(x, y, (0,), 2, torch.Generator())


def test_measure_small_budget():
    m = get_measure("pruning_by_explaining_fewshot")
    width = 16
    r = m(0, width=width, steps=40, shots=3, transfer_steps=5, rates=[0.5, 0.75])
    gaps = [max(r[f"acc_taylor_{s:g}"], r[f"acc_weight_{s:g}"]) - r[f"acc_lrp_{s:g}"] for s in (0.5, 0.75)]
    assert r["deficit"] == pytest.approx(sum(gaps) / 2, abs=1e-12)
    dense = 64 * width + width + width * width + width + width * 5 + 5
    for crit in ("lrp", "taylor", "weight"):
        frac = r[f"params_{crit}_0.5"]
        # 16 of 32 hidden units kept: (64 + 1) h1 + (h1 + 1) h2 + (h2 + 1) 5 parameters with h1 + h2 = 16
        assert any(abs(frac - (65 * h1 + (h1 + 1) * (16 - h1) + (16 - h1 + 1) * 5) / dense) < 1e-12
                   for h1 in range(1, 16))
    with pytest.raises(ConfigError, match="rates"):
        m(0, width=width, steps=5, rates=[1.0])
