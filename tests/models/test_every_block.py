"""Every registered block works as a part of every backbone that takes its kind.

Channel mixers as the classifier's hidden layers and inside the sequence model; norms in both;
activations inside the MLP; sequence mixers in the sequence model. Each model runs forward and
backward on a small seeded batch, its parameters get gradients, and one optimizer step changes
its output. Parametrized over the registry, so a newly registered block is checked
automatically.
"""
from __future__ import annotations

import math

import pytest
import torch

import layerlab
from layerlab.models import build_model, count_parameters
from layerlab.spec import ModelSpec



class VectorTask:
    input_kind = "vector"
    name = "vectors"
    input_dim = 12
    n_outputs = 5


class TokenTask:
    input_kind = "tokens"
    name = "tokens"
    vocab_size = 11
    n_outputs = 7
    max_length = 9


def width_for(spec: ModelSpec, at_least: int = 16) -> int:
    m = spec.width_multiple
    return m * math.ceil(at_least / m)


def sized(spec_kwargs: dict) -> ModelSpec:
    spec = ModelSpec(**spec_kwargs)
    return ModelSpec(**{**spec_kwargs, "d_model": width_for(spec)})


def train_one_step(model: torch.nn.Module, x: torch.Tensor, n_outputs: int) -> None:
    """Forward, backward and one Adam step: output finite, some gradient nonzero, output moves."""
    gen = torch.Generator().manual_seed(1)
    y0 = model(x)
    assert y0.shape[-1] == n_outputs and torch.isfinite(y0).all()
    target = torch.randint(0, n_outputs, y0.shape[:-1], generator=gen)
    loss = torch.nn.functional.cross_entropy(y0.reshape(-1, n_outputs), target.reshape(-1))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.step()
    assert not torch.allclose(model(x), y0)


@pytest.mark.parametrize("channel", layerlab.names("channel"))
def test_channel_mixer_in_the_classifier(channel: str) -> None:
    torch.manual_seed(0)
    spec = sized(dict(backbone="classifier", channel=channel, n_layers=2))
    model = build_model(spec, VectorTask())
    assert count_parameters(model) > 0
    train_one_step(model, torch.randn(8, VectorTask.input_dim), VectorTask.n_outputs)


@pytest.mark.parametrize("channel", layerlab.names("channel"))
def test_channel_mixer_in_the_sequence_model(channel: str) -> None:
    torch.manual_seed(0)
    spec = sized(dict(backbone="sequence", mixer="attention", channel=channel, n_layers=1,
                      mixer_options={"n_heads": 2}))
    model = build_model(spec, TokenTask())
    x = torch.randint(0, TokenTask.vocab_size, (3, TokenTask.max_length))
    train_one_step(model, x, TokenTask.n_outputs)


@pytest.mark.parametrize("norm", layerlab.names("norm"))
@pytest.mark.parametrize("backbone", ["classifier", "sequence"])
def test_norm_in_both_backbones(norm: str, backbone: str) -> None:
    torch.manual_seed(0)
    spec = sized(dict(backbone=backbone, norm=norm, n_layers=1, mixer_options={"n_heads": 2}))
    if backbone == "classifier":
        model, x, n = build_model(spec, VectorTask()), torch.randn(8, VectorTask.input_dim), VectorTask.n_outputs
    else:
        model = build_model(spec, TokenTask())
        x, n = torch.randint(0, TokenTask.vocab_size, (3, TokenTask.max_length)), TokenTask.n_outputs
    train_one_step(model, x, n)
    model.eval()  # eval mode (running statistics, where a norm has them) gives finite outputs too
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("activation", [a for a in layerlab.names("activation") if a != "stablemax"])
def test_activation_inside_the_mlp(activation: str) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(backbone="classifier", channel="mlp", d_model=16, n_layers=1,
                     channel_options={"activation": activation})
    model = build_model(spec, VectorTask())
    train_one_step(model, torch.randn(8, VectorTask.input_dim), VectorTask.n_outputs)


@pytest.mark.parametrize("mixer", layerlab.names("mixer"))
def test_sequence_mixer_in_the_sequence_model(mixer: str) -> None:
    torch.manual_seed(0)
    spec = sized(dict(backbone="sequence", mixer=mixer, channel="mlp", n_layers=1))
    model = build_model(spec, TokenTask())
    x = torch.randint(0, TokenTask.vocab_size, (3, TokenTask.max_length))
    train_one_step(model, x, TokenTask.n_outputs)
