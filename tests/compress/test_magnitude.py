"""Magnitude pruning (Han et al. 2015): the exact sparsity, the kept weights are exactly the largest
(per layer or over the network), the input is never modified, bad levels are refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.compress import apply_technique
from layerlab.compress.magnitude import (apply_masks, magnitude_global, magnitude_uniform, masks_of,
                                         prunable_weights, smallest_mask, sparsity)
from layerlab.errors import ConfigError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 5, 13), nn.LayerNorm(13), nn.ReLU(),
                         nn.Linear(13, 7))


def _x() -> torch.Tensor:
    return torch.randn(4, 2, 7, generator=torch.Generator().manual_seed(1))


def test_prunable_are_linear_and_conv_weights_only():
    net = _net()
    assert list(prunable_weights(net)) == ["0.weight", "2.weight", "5.weight"]
    assert list(prunable_weights(net, bias=True)) == ["0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"]
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    emb[1].weight = emb[0].weight  # tied head: an embedding table, left dense unless embedding=True
    assert list(prunable_weights(emb)) == []
    assert list(prunable_weights(emb, embedding=True)) == ["0.weight"]


@pytest.mark.parametrize("level", [0.0, 0.3, 0.5, 0.9, 0.95, 1.0])
def test_uniform_exact_sparsity_and_largest_kept_per_layer(level):
    net = _net()
    before = {n: p.detach().clone() for n, p in prunable_weights(net).items()}
    out = magnitude_uniform(net, level, None)
    for name, p in prunable_weights(out).items():
        w = before[name]
        kept = p != 0
        assert int((~kept).sum()) == round(level * w.numel())          # exact count per layer
        assert torch.equal(p[kept], w[kept])                           # kept weights unchanged
        if kept.any() and (~kept).any():
            assert w[kept].abs().min() >= w[~kept].abs().max()         # the kept are the largest
    for n, p in net.named_parameters():                                # input untouched (copy semantics)
        assert torch.equal(p, dict(_net().named_parameters())[n])


@pytest.mark.parametrize("level", [0.0, 0.25, 0.8, 0.95, 1.0])
def test_global_one_threshold(level):
    net = _net()
    w = torch.cat([p.detach().reshape(-1) for p in prunable_weights(net).values()])
    out = magnitude_global(net, level, None)
    v = torch.cat([p.detach().reshape(-1) for p in prunable_weights(out).values()])
    kept = v != 0
    assert int((~kept).sum()) == round(level * w.numel())
    assert torch.equal(v[kept], w[kept])
    if kept.any() and (~kept).any():
        assert w[kept].abs().min() >= w[~kept].abs().max()
    assert sparsity(out) == pytest.approx(round(level * w.numel()) / w.numel(), abs=1e-15)
    # biases and the LayerNorm are untouched
    for (n, a), b in zip(out.named_parameters(), net.parameters()):
        if not n.endswith("weight") or n.startswith("3."):
            assert torch.equal(a, b)


def test_global_differs_from_uniform_and_ties_are_counted_exactly():
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(0.5)        # 16 tied magnitudes
        net[1].weight.fill_(2.0)
    g = magnitude_global(net, 0.5, None)  # 12 of 24 go, all from the first layer
    assert int((g[0].weight == 0).sum()) == 12 and int((g[1].weight == 0).sum()) == 0
    u = magnitude_uniform(net, 0.5, None)
    assert int((u[0].weight == 0).sum()) == 8 and int((u[1].weight == 0).sum()) == 4


def test_registered_and_options_checked():
    net = _net()
    out = apply_technique("magnitude_global", net, 0.5, None, bias=True)
    n = sum(p.numel() for p in prunable_weights(net, bias=True).values())
    assert n == 18 + 3 + 195 + 13 + 91 + 7
    assert sparsity(out, bias=True) == pytest.approx(round(0.5 * n) / n, abs=1e-15)
    with pytest.raises(ConfigError, match="valid options"):
        apply_technique("magnitude_uniform", net, 0.5, None, biases=True)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        magnitude_uniform(net, 1.5, None)
    with pytest.raises(ConfigError, match="no prunable weights"):
        magnitude_global(nn.Sequential(nn.LayerNorm(3)), 0.5, None)


def test_masks_round_trip_and_forward_still_runs():
    net = _net()
    out = magnitude_uniform(net, 0.7, None)
    masks = masks_of(out)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(1.0)                 # "fine-tuning" regrows every weight ...
    apply_masks(out, masks)             # ... the mask takes the pruned ones back to zero
    assert sparsity(out) == pytest.approx(sum(int((~m).sum()) for m in masks.values()) / 304, abs=1e-15)
    assert out(_x()).shape == (4, 7)
    assert smallest_mask(torch.tensor([3.0, 1.0, 1.0, 2.0]), 2).tolist() == [True, False, False, True]
    with pytest.raises(ConfigError, match="shape"):
        apply_masks(out, {"0.weight": torch.ones(2, dtype=torch.bool)})
