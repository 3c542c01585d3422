"""side_effect_free: what it restores, and that a nested call on the same model costs nothing."""
from __future__ import annotations

import torch
from torch import nn

from layerlab.lens import side_effect_free


def net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model(torch.randn(5, 3)).sum().backward()
    return model.train()


def test_restores_modes_gradients_and_rng():
    model = net()
    grads = [p.grad for p in model.parameters()]
    rng = torch.random.get_rng_state()
    with side_effect_free(model):
        assert not model.training and all(p.grad is None for p in model.parameters())
        torch.randn(10)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_a_nested_call_on_the_same_model_leaves_the_work_to_the_outer_one():
    model = net()
    grads = [p.grad for p in model.parameters()]
    with side_effect_free(model):
        with side_effect_free(model):
            marker = torch.ones(4, 3)
            next(model.parameters()).grad = marker  # an inner call would clear this on exit
        assert next(model.parameters()).grad is marker and not model.training
    assert model.training and all(p.grad is g for p, g in zip(model.parameters(), grads))


def test_an_inner_eval_call_inside_a_train_mode_call_still_switches_modes():
    model, other = net(), net()
    with side_effect_free(model, eval_mode=False):
        assert model.training
        with side_effect_free(model):
            assert not model.training
        assert model.training
        with side_effect_free(other):  # another model: its own full save and restore
            assert not other.training and all(p.grad is None for p in other.parameters())
        assert other.training and all(p.grad is not None for p in other.parameters())
    with side_effect_free(model):  # the registry is empty again: a full call
        assert not model.training
    assert model.training
