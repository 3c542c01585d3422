"""The corrupted-modular-addition pruning measurement (arXiv:2310.13061) on a network built by hand.

The periodic part is the exact solution of modular addition by a quadratic MLP (neurons
``cos(2 pi k a/p + f1) + cos(2 pi k b/p + f2)``, readout ``cos(2 pi k c/p + f1 + f2)``, phases on a
3 x 3 grid so every cross term cancels); lookup neurons ``(e_a0 + e_b0)^2`` with readout ``6 e_c0``
memorize three wrong labels. IPR pruning must remove exactly the lookup neurons.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.grok_or_not import corrupt_labels, forward, ipr_keep_mask
from layerlab.errors import ConfigError

P = 7


def _table(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], 1).to(torch.float64)
    return x, (a + b) % p


def _periodic_plus_lookup(p: int, corrupted: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    j = torch.arange(p, dtype=torch.float64)
    us, ws = [], []
    for k in range(1, (p + 1) // 2):
        for r in range(9):
            f1, f2 = 2 * math.pi * (r // 3) / 3, 2 * math.pi * (r % 3) / 3
            us.append(torch.cat([torch.cos(2 * math.pi * k * j / p + f1), torch.cos(2 * math.pi * k * j / p + f2)]))
            ws.append(torch.cos(2 * math.pi * k * j / p + f1 + f2))
    for a0, b0, c0 in corrupted:
        u = torch.zeros(2 * p, dtype=torch.float64)
        u[a0], u[p + b0] = 1.0, 1.0
        us.append(u)
        ws.append(6.0 * F.one_hot(torch.tensor(c0), p).to(torch.float64))
    return torch.stack(us), torch.stack(ws, 1)


def test_ipr_pruning_removes_exactly_the_memorizing_neurons():
    x, y = _table(P)
    bad = [(0, 1, 5), (2, 3, 0), (4, 6, 2)]  # distinct rows and columns; every label is wrong
    u, w = _periodic_plus_lookup(P, bad)
    n_periodic = 9 * (P - 1) // 2
    y_corrupt = y.clone()
    rows = torch.tensor([a * P + b for a, b, _ in bad])
    y_corrupt[rows] = torch.tensor([c for *_, c in bad])
    assert not torch.equal(y_corrupt[rows], y[rows])
    out = forward(x, u, w, "quadratic")
    assert torch.equal(out.argmax(1), y_corrupt)  # memorizes the corrupted labels and generalizes elsewhere
    score, keep = ipr_keep_mask(u, w, P, 0.5)
    assert torch.allclose(score[:n_periodic], torch.ones(n_periodic, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(score[n_periodic:], torch.full((3,), (2 * P - 1) / P**2, dtype=torch.float64), rtol=1e-12)
    assert keep.tolist() == [1.0] * n_periodic + [0.0] * 3
    pruned = forward(x, u, w, "quadratic", keep)
    assert torch.equal(pruned.argmax(1), y)  # corrupted accuracy 1 -> 0, clean accuracy stays 1


def test_corrupt_labels_are_always_wrong_and_seeded():
    y = torch.arange(200) % 11
    out, mask = corrupt_labels(y, 11, 0.3, torch.Generator().manual_seed(5))
    assert int(mask.sum()) == 60
    assert bool((out[mask] != y[mask]).all()) and torch.equal(out[~mask], y[~mask])
    assert bool(((out >= 0) & (out < 11)).all())
    again, mask2 = corrupt_labels(y, 11, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(again, out) and torch.equal(mask2, mask)


def test_measure_runs_and_pruning_nothing_changes_nothing():
    m = get_measure("grok_or_not_pruning")
    out = m(0, p=7, width=16, steps=30, ipr_cut=1e-6)
    assert out["pruned_fraction"] == 0.0
    assert out["corrupted_change"] == 0.0 and out["test_drop"] == 0.0
    out = m(0, p=7, width=16, steps=30, ipr_cut=0.999)  # prunes every neuron that is not a pure frequency
    assert out["pruned_fraction"] > 0.5
    assert out["corrupted_change"] == pytest.approx(out["corrupted_acc_after"] - out["corrupted_acc_before"])
    assert out["test_drop"] == pytest.approx(out["test_acc_before"] - out["test_acc_after"])


def test_bad_options_are_config_errors():
    m = get_measure("grok_or_not_pruning")
    with pytest.raises(ConfigError, match="activation"):
        m(0, activation="tanh")
    with pytest.raises(ConfigError, match="0 < xi < 1"):
        m(0, xi=0.0)
