r"""Activating-while-Pruning (AP): lower the dynamic dead neuron rate of a network during iterative pruning.

Liu, Ghosh, Tan & Motani, "AP: Selective Activation for De-sparsifying Pruned Neural Networks"
(2022, arXiv:2212.06145; TMLR 2023). Abstract (verified with the search tool): the sparsity that ReLU
introduces, quantified by the *dynamic dead neuron rate* (DNR), "is not beneficial for the pruned
network"; "the more the network is pruned, the smaller the dynamic DNR becomes during optimization";
AP "works in tandem with existing pruning methods" (it does not rank weights) "by selective activation
of nodes to reduce the dynamic DNR"; +3-4% on CIFAR-10/100, +2-3% on ImageNet.

Dynamic DNR of a batch B (the fraction of ReLU outputs that are exactly zero):

    DNR(B) = (1 / (|B| * sum_l n_l)) * sum_{x in B} sum_l sum_{j <= n_l} 1[ a_{l,j}(x) = 0 ],

a_{l,j}(x) the output of unit j of activation layer l. Per unit, ``d_{l,j}`` is the same count over the
batch only (``dead_neuron_rate(..., per_unit=True)``).

AP as done here (one round per pruning step of an iterative magnitude-pruning schedule):
prune (``compress.magnitude``), then measure the per-unit dead rates d_{l,j} on a training batch and
switch the ``fraction`` of each layer's still-ReLU units with the LARGEST d_{l,j} to a non-sparsifying
activation (SiLU, x sigmoid(x), which is zero only at x = 0), then retrain with the zeros kept. What
could NOT be verified (only the abstract was readable in the stored sources): the paper's exact node
selection score and the replacement activation; the rule above (most-dead units -> SiLU) is this
module's reading of "selective activation of nodes to reduce the dynamic DNR", so a card using it
tests that reading.

Stored: ``SelectiveActivation`` keeps a boolean buffer ``switched`` (n units); ReLU where False, SiLU
where True. Pruned weights are exact zeros in the Linear layers (savings measured as nonzeros).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper
from .magnitude import finetune_masked, magnitude_global

AP_2022 = Paper("AP: Selective Activation for De-sparsifying Pruned Neural Networks", 2022, "2212.06145")


class SelectiveActivation(nn.Module):
    """ReLU on the units whose ``switched`` flag is False, SiLU on the others (last dimension = units)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"SelectiveActivation needs width >= 1, got {width}")
        self.register_buffer("switched", torch.zeros(width, dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.switched.numel():
            raise ConfigError(f"SelectiveActivation of width {self.switched.numel()} got input with last dim {x.shape[-1]}")
        return torch.where(self.switched, nn.functional.silu(x), torch.relu(x))


def selective(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` whose every ``nn.ReLU`` after an ``nn.Linear`` is a ``SelectiveActivation``
    (nothing switched yet: the function is unchanged)."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError("selective() takes an nn.Sequential of Linear and ReLU layers (e.g. relu_mlp)")
    layers, width = [], None
    for m in model:
        if isinstance(m, nn.Linear):
            width = m.out_features
        if isinstance(m, nn.ReLU):
            if width is None:
                raise ConfigError("a ReLU before any nn.Linear: cannot tell its width")
            m = SelectiveActivation(width)
        layers.append(copy.deepcopy(m))
    return nn.Sequential(*layers)


def _activations(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.ReLU, SelectiveActivation))]


@torch.no_grad()
def dead_neuron_rate(model: nn.Module, x: Tensor, *, per_unit: bool = False) -> float | list[Tensor]:
    """Dynamic DNR of ``model`` on batch ``x``: the fraction of outputs of its ReLU/SelectiveActivation
    layers that are exactly zero; with ``per_unit`` the per-unit fractions ``d_{l,j}`` (one tensor per layer)."""
    acts = _activations(model)
    if not acts:
        raise ConfigError("dead_neuron_rate: the model has no nn.ReLU or SelectiveActivation layer")
    outs: list[Tensor] = []
    hooks = [a.register_forward_hook(lambda _m, _i, o: outs.append(o.detach())) for a in acts]
    try:
        was = model.training
        model.eval()
        model(x)
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    zeros = [(o == 0).reshape(-1, o.shape[-1]) for o in outs]
    if per_unit:
        return [z.double().mean(0) for z in zeros]
    return float(sum(int(z.sum()) for z in zeros) / sum(z.numel() for z in zeros))


@torch.no_grad()
def switch_most_dead(model: nn.Module, x: Tensor, fraction: float) -> int:
    """Switch, in each SelectiveActivation layer, the round(fraction * n) still-ReLU units with the largest
    dead rate on ``x`` (ties by position) to SiLU, in place; returns the number switched."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction of units to switch must be in [0, 1], got {fraction}")
    acts = _activations(model)
    sel = [a for a in acts if isinstance(a, SelectiveActivation)]
    if not sel:
        raise ConfigError("switch_most_dead: no SelectiveActivation layer; wrap the model with selective() first")
    rates = dead_neuron_rate(model, x, per_unit=True)
    n = 0
    for a, d in zip(acts, rates):
        if not isinstance(a, SelectiveActivation):
            continue
        k = min(round(fraction * a.switched.numel()), int((~a.switched).sum()))
        score = torch.where(a.switched, torch.full_like(d, -1.0), d)
        order = torch.sort(-score, stable=True).indices[:k]
        a.switched[order] = True
        n += k
    return n


def activate_while_pruning(model: nn.Sequential, x: Tensor, y: Tensor, *, schedule: Sequence[float],
                           finetune_steps: int, lr: float, seed: int, fraction: float = 0.1,
                           ap: bool = True, batch: int = 64, record: dict | None = None) -> nn.Sequential:
    """Iterative global magnitude pruning through the sparsities of ``schedule``, each step followed by
    ``finetune_steps`` Adam steps with the zeros kept; with ``ap`` an AP round (``switch_most_dead`` on
    ``x``) after each pruning step. Returns a new model (the input is not modified). ``record`` (if given)
    gets ``{sparsity: (DNR before the switch, DNR after retraining)}``."""
    if not schedule or list(schedule) != sorted(schedule) or not all(0.0 < s < 1.0 for s in schedule):
        raise ConfigError(f"schedule must be increasing sparsities in (0, 1), got {schedule}")
    if finetune_steps < 0 or not lr > 0:
        raise ConfigError(f"need finetune_steps >= 0 and lr > 0, got {finetune_steps}, {lr}")
    net = selective(model)
    gen = torch.Generator().manual_seed(seed)
    for level in schedule:
        net = magnitude_global(net, level)
        before = dead_neuron_rate(net, x)
        if ap:
            switch_most_dead(net, x, fraction)
        finetune_masked(net, x, y, steps=finetune_steps, lr=lr, generator=gen, batch=batch)
        if record is not None:
            record[level] = (before, dead_neuron_rate(net, x))
    return net
