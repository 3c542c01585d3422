"""Training memory and inference state: exact counts on models whose footprint is known."""
from __future__ import annotations

import torch
from torch import nn

import layerlab
from layerlab.models import build_model
from layerlab.spec import ModelSpec
from layerlab.train.footprint import inference_state_size, saved_activation_bytes, sequence_mixers, train_step_memory


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


def test_inference_state_counts_a_mixer_made_of_mixers_once() -> None:
    """Griffin holds recurrent blocks and local attention, each a mixer itself: its state is its
    own measured ``state_size``, counted once per layer (not again for its parts)."""
    spec = ModelSpec(mixer="griffin", d_model=8, n_layers=2, mixer_options={"n_heads": 2})
    model = build_model(spec, Tokens())
    griffins = [m for m in model.modules() if type(m).__name__ == "Griffin"]
    assert len(griffins) == 2 and len(sequence_mixers(model)) == 2
    parts = [m for m in griffins[0].modules() if m is not griffins[0] and getattr(m, "recurrent", False)]
    assert len(parts) == 3  # two recurrent blocks and a local attention block inside each
    assert inference_state_size(model, 16) == 2 * griffins[0].state_size
    lru = build_model(ModelSpec(mixer="lru", d_model=8, n_layers=3), Tokens())
    assert inference_state_size(lru, 16) == 3 * lru.blocks[0].mixer.f.state_size


def test_mixers_are_found_by_what_they_expose() -> None:
    class Recurrent(nn.Module):  # no layerlab class: a flag and init_state make it a mixer
        recurrent = True
        state_size = 7

        def init_state(self, batch_size):
            return (torch.zeros(batch_size, 7),)

    class Cached(nn.Module):
        recurrent = False

        def init_state(self, batch_size):
            raise NotImplementedError

        def cache_size(self, length):
            return 2 * length

    model = nn.Sequential(Recurrent(), Cached(), nn.Linear(2, 2))
    assert inference_state_size(model, 10) == 7 + 20
    assert inference_state_size(nn.Sequential(nn.Linear(2, 2)), 10) is None

