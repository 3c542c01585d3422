"""AP: the dynamic DNR instrument equals an exact count on a constructed net; switching changes only the
selected units; the most-dead units are the ones switched; iterative pruning reaches the schedule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.compress.activating_while_pruning import (SelectiveActivation, activate_while_pruning,
                                                        dead_neuron_rate, selective, switch_most_dead)
from layerlab.compress.magnitude import sparsity
from layerlab.errors import ConfigError


def _constructed() -> tuple[nn.Sequential, torch.Tensor]:
    # identity first layer, bias chosen so unit j is zero exactly for inputs x_j <= -b_j
    lin = nn.Linear(3, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(3))
        lin.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 2))
    x = torch.tensor([[-1.0, -2.0, 0.5], [2.0, 0.0, 2.0], [0.0, -0.5, 1.0], [-3.0, -1.0, 3.0]])
    return net, x


def test_dnr_exact_count():
    net, x = _constructed()
    pre = x + torch.tensor([0.0, 1.0, -1.0])
    dead = (pre <= 0)  # ReLU output exactly zero
    assert dead_neuron_rate(net, x) == pytest.approx(float(dead.double().mean()), abs=1e-12)
    per = dead_neuron_rate(net, x, per_unit=True)
    assert torch.allclose(per[0], dead.double().mean(0), atol=0)
    # by hand: pre-activations (-1, -1, -0.5), (2, 1, 1), (0, 0.5, 0), (-3, 0, 2)
    assert per[0].tolist() == [0.75, 0.5, 0.5]


def test_switch_leaves_unselected_units_unchanged():
    torch.manual_seed(0)
    net = selective(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)))
    x = torch.randn(50, 5)
    ref = nn.Sequential(net[0], nn.ReLU())(x).detach()
    rates = dead_neuron_rate(net, x, per_unit=True)[0]
    assert switch_most_dead(net, x, 0.25) == 2
    act: SelectiveActivation = net[1]
    sw = act.switched
    assert int(sw.sum()) == 2
    # the switched units are the two most-dead ones (stable order)
    assert set(torch.nonzero(sw).flatten().tolist()) == set(torch.sort(-rates, stable=True).indices[:2].tolist())
    out = act(net[0](x)).detach()
    assert torch.equal(out[:, ~sw], ref[:, ~sw])
    assert torch.allclose(out[:, sw], nn.functional.silu(net[0](x))[:, sw].detach(), atol=0)
    # a second round never re-selects a switched unit
    switch_most_dead(net, x, 0.25)
    assert int(act.switched.sum()) == 4 and bool(act.switched[sw].all())


def test_iterative_pruning_and_errors():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    rec: dict = {}
    out = activate_while_pruning(net, x, y, schedule=[0.5, 0.8], finetune_steps=5, lr=1e-2, seed=0, record=rec)
    assert sparsity(out) == pytest.approx(round(0.8 * (96 + 48)) / 144, abs=1e-12)
    assert set(rec) == {0.5, 0.8} and int(out[1].switched.sum()) == 2 * round(0.1 * 16)
    assert isinstance(net[1], nn.ReLU)  # input untouched
    with pytest.raises(ConfigError, match="schedule"):
        activate_while_pruning(net, x, y, schedule=[0.8, 0.5], finetune_steps=1, lr=1e-2, seed=0)
    with pytest.raises(ConfigError, match="selective"):
        switch_most_dead(net, x, 0.1)
