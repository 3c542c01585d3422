"""Training memory and inference state: exact counts on models whose footprint is known."""
from __future__ import annotations

import torch
from torch import nn

import layerlab
from layerlab.models import ModelSpec, build_model
from layerlab.train.footprint import inference_state_size, saved_activation_bytes, train_step_memory


def test_saved_activations_of_a_linear_relu_stack_are_counted_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    x = torch.randn(7, 10)
    ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    _, saved = saved_activation_bytes(lambda: model(x).sum(), exclude=ptrs)
    # saved: x (7x10) for the first weight's grad, relu's output (7x20) for relu and the second
    # linear (one storage, counted once); the weights are excluded
    assert saved == 4 * (7 * 10 + 7 * 20)


def test_train_step_memory_is_params_grads_adam_state_and_activations() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    x = torch.randn(7, 10)
    n_params = sum(p.numel() for p in model.parameters())
    total = train_step_memory(model, lambda m: m(x).square().sum())
    activations = 4 * (7 * 10 + 7 * 20 + 7 * 3)  # + the output, saved by square
    assert total == 4 * n_params * (1 + 1 + 2) + activations
    assert all(p.grad is None for p in model.parameters()), "the model itself is untouched"
    bigger = train_step_memory(model, lambda m: m(torch.randn(70, 10)).square().sum())
    assert bigger - total == 9 * activations, "activation memory is linear in the batch"


def test_rng_state_is_restored() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    train_step_memory(model, lambda m: m(torch.randn(5, 4)).sum())
    assert torch.equal(torch.rand(3), expected)


class Tokens:
    input_kind, name, vocab_size, n_outputs, max_length = "tokens", "t", 5, 5, 16


def test_inference_state_of_attention_is_its_kv_cache() -> None:
    spec = ModelSpec(mixer="attention", d_model=8, n_layers=3, mixer_options={"n_heads": 2})
    model = build_model(spec, Tokens())
    assert inference_state_size(model, 16) == 3 * 2 * 16 * 8
    classifier = build_model(ModelSpec(backbone="classifier", d_model=8), type("V", (), {
        "input_kind": "vector", "name": "v", "input_dim": 3, "n_outputs": 2})())
    assert inference_state_size(classifier, 16) is None
    assert "attention" in layerlab.names("mixer")
