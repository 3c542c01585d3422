"""Optimizer parameter groups: weight decay skips what a block declares in ``no_weight_decay``
(state-space parameters such as Mamba's A_log and S4D's A), and the learning-rate schedule."""
from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from torch import nn

import layerlab
from layerlab.errors import ConfigError
from layerlab.spec import OptimSpec
from layerlab.train.optim import build_optimizer, lr_at, no_weight_decay_parameters

# per mixer, its parameters (relative to the block) that the official code does not decay
EXPECTED = {
    "mamba": {"A_log", "D"},
    "s4d": {"A_re_log", "A_im", "log_dt"},
    "lru": {"nu_log", "theta_log", "gamma_log", "B_re", "B_im"},
    "rglru": {"lam"},
    "gated_deltanet": {"A_log", "dt_bias"},
}


def groups_of(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    """id(parameter) -> the weight decay of its group."""
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_declared_state_space_parameters_get_no_weight_decay(name, optimizer):
    torch.manual_seed(0)
    block = layerlab.build("mixer", name, 16)
    model = nn.Sequential(nn.Linear(16, 16), block)  # names are relative to the block, at any depth
    wd = groups_of(build_optimizer(model, OptimSpec(name=optimizer, weight_decay=0.1)))
    for pname, p in block.named_parameters():
        if pname in EXPECTED[name]:
            assert wd[id(p)] == 0.0, pname
        elif p.ndim >= 2:
            assert wd[id(p)] == 0.1, pname  # the other matrices are still decayed
    assert wd[id(model[0].weight)] == 0.1 and wd[id(model[0].bias)] == 0.0
    assert len(wd) == sum(1 for _ in model.parameters())  # every parameter in exactly one group
    assert set(block.no_weight_decay) == EXPECTED[name]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_decayed_step_leaves_declared_parameters_untouched(optimizer):
    """With zero gradients the only change a step makes is the decay: Mamba's A_log (a matrix)
    must keep S4D-Real's A_n = -n exactly, while in_proj's weight shrinks by 1 - lr * wd."""
    torch.manual_seed(0)
    block = layerlab.build("mixer", "mamba", 8, d_state=4)
    lr, decay = 0.1, 0.5
    opt = build_optimizer(block, OptimSpec(name=optimizer, lr=lr, weight_decay=decay, momentum=0.0))
    before = {n: p.detach().clone() for n, p in block.named_parameters()}
    for p in block.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(block.A_log, before["A_log"])
    assert torch.equal(-torch.exp(block.A_log[0]), -torch.arange(1.0, 5.0))
    assert torch.equal(block.D, before["D"])
    w = block.in_proj.weight
    assert torch.allclose(w, before["in_proj.weight"] * (1 - lr * decay), rtol=1e-6, atol=0)


def test_any_module_can_declare_and_bad_declarations_fail():
    class Scaled(nn.Module):
        no_weight_decay: ClassVar[tuple[str, ...]] = ("scale",)

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3, 3))
            self.weight = nn.Parameter(torch.ones(3, 3))

    model = nn.ModuleDict({"a": Scaled(), "b": nn.Linear(3, 3)})
    assert no_weight_decay_parameters(model) == {id(model["a"].scale)}
    wd = groups_of(build_optimizer(model, OptimSpec(weight_decay=0.2)))
    assert wd[id(model["a"].scale)] == 0.0 and wd[id(model["a"].weight)] == 0.2

    class Typo(Scaled):
        no_weight_decay = ("scael",)

    with pytest.raises(ConfigError, match=r"Typo .* lists 'scael' in no_weight_decay.*its parameters: scale, weight"):
        build_optimizer(Typo(), OptimSpec(weight_decay=0.1))

    class NotNames(Scaled):
        no_weight_decay = "scale"  # a string, not a tuple of names

    with pytest.raises(ConfigError, match="tuple of parameter names"):
        build_optimizer(NotNames(), OptimSpec(weight_decay=0.1))


def test_frozen_parameters_are_left_out():
    model = nn.Linear(4, 4)
    model.bias.requires_grad_(False)
    opt = build_optimizer(model, OptimSpec(weight_decay=0.1))
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 1 and params[0] is model.weight


def test_schedule_warmup_then_cosine_to_the_floor():
    spec = OptimSpec(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_at(s, 14, spec) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, 14, spec) == 1.0
    assert math.isclose(lr_at(9, 14, spec), 0.1 + 0.9 * 0.5, rel_tol=1e-12)  # half way: cos = 0
    assert math.isclose(lr_at(14, 14, spec), 0.1, rel_tol=1e-12)
    assert lr_at(100, 14, OptimSpec(lr=0.5, schedule="constant")) == 0.5
