"""The layer-adaptive pruning measurement: fine-tuning keeps the zeros, the nonzero fraction is counted
exactly, all methods end at the same measured sparsity, and the deficit is the stated combination."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.layer_adaptive_pruning import nonzero_fraction
from layerlab.compress.magnitude import finetune_masked, magnitude_global, prunable_weights
from layerlab.errors import ConfigError


def test_finetune_keeps_zeros_and_nonzero_fraction_is_exact():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    pruned = magnitude_global(net, 0.75, None)
    zeros = {n: p == 0 for n, p in prunable_weights(pruned).items()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    before = [p.clone() for p in pruned.parameters()]
    tuned = finetune_masked(pruned, x, y, steps=20, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters()))  # it trained
    for n, p in prunable_weights(tuned).items():
        assert bool((p[zeros[n]] == 0).all())
    n_params = 5 * 8 + 8 + 8 * 3 + 3
    expected = (n_params - sum(int(z.sum()) for z in zeros.values())
                - sum(int((p == 0).sum()) for n, p in tuned.named_parameters() if n.endswith("bias"))) / n_params
    assert nonzero_fraction(tuned) == pytest.approx(expected, abs=1e-15)


def test_measure_small_budget():
    m = get_measure("layer_adaptive_pruning_digits")
    r = m(0, width=16, steps=60, schedule=[0.5, 0.8], levels=[0.8], finetune_steps=10, grid=4, calibration=256)
    accs = {k: r[f"acc_{k}_0.8"] for k in ("dp", "uniform", "global")}
    assert r["deficit"] == pytest.approx(max(accs["uniform"], accs["global"]) - accs["dp"], abs=1e-12)
    one = {k: r[f"oneshot_{k}_0.8"] for k in ("dp", "uniform", "global")}
    assert r["deficit_oneshot"] == pytest.approx(max(one["uniform"], one["global"]) - one["dp"], abs=1e-12)
    # equal sparsity of the weights: total nonzero fractions differ only by biases zeroed by chance
    assert max(r[f"nonzero_{k}_0.8"] for k in accs) - min(r[f"nonzero_{k}_0.8"] for k in accs) < 0.01
    with pytest.raises(ConfigError, match="levels"):
        m(0, width=16, steps=10, schedule=[0.5], levels=[0.8])
