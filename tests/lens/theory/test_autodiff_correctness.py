"""Lee, Park & Aiken (2023, arXiv:2301.13370): AD of a ReLU MLP with biases at representable parameters."""
from __future__ import annotations

import pytest
import torch

from layerlab.errors import ShapeError
from layerlab.lens.theory.autodiff_correctness import (ad_gradient, adjacent_region_gradient, kink_pairs, mlp_loss,
                                                       no_bias_counterexample, place_on_kinks, pre_activations)


def net(seed, dtype=torch.float32, h=6, d=3):
    g = torch.Generator().manual_seed(seed)
    p = {"w": torch.randn(h, d, generator=g), "b": torch.randn(h, generator=g), "a": torch.randn(h, generator=g),
         "c": torch.randn((), generator=g)}
    return {k: v.to(dtype) for k, v in p.items()}, torch.randn(5, d, generator=g).to(dtype)


def test_placed_kinks_are_exact_zeros_and_ad_is_the_off_side_limit():
    for seed in range(5):
        p, x = net(seed)
        q = place_on_kinks(p, x, torch.tensor([1, 4]), torch.tensor([0, 3]))
        z = pre_activations(q, x)
        assert z[0, 1] == 0 and z[3, 4] == 0
        assert {tuple(r) for r in kink_pairs(q, x).tolist()} >= {(0, 1), (3, 4)}
        delta = 0.25 * float(z[z != 0].abs().min())
        ad, off, on = ad_gradient(q, x), adjacent_region_gradient(q, x, delta), adjacent_region_gradient(q, x, -delta)
        scale = float(ad.abs().max())
        assert float((ad - off).abs().max()) <= 1e-6 * scale  # AD picks relu'(0) = 0: the off side
        assert float((on - off).abs().max()) > 1e-4 * scale  # a real kink: the two sides differ


def test_region_limit_is_exact_for_the_affine_dependence():
    p, x = net(9, torch.float64)
    q = place_on_kinks(p, x, torch.tensor([2]), torch.tensor([1]))
    z = pre_activations(q, x)
    delta = 0.25 * float(z[z != 0].abs().min())
    assert torch.allclose(adjacent_region_gradient(q, x, delta), adjacent_region_gradient(q, x, delta / 8),
                          rtol=0, atol=1e-13)


def test_no_bias_counterexample_and_shapes():
    assert no_bias_counterexample(1.5) == (0.0, 1.5)
    p, x = net(0)
    with pytest.raises(ShapeError, match="need x"):
        mlp_loss(p, x[:, :2])
