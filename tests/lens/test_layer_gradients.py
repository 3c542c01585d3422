"""Nuclear norms of weight gradients (lens.layer_gradients) against the rank-one closed form."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import layer_gradients


def test_one_example_gives_a_rank_one_gradient_with_nuclear_norm_the_product_of_norms():
    # L = 1/2 ||W x - y||^2: dL/dW = (W x - y) x^T, rank one: ||G||_* = ||W x - y|| ||x||
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 3, bias=True, dtype=torch.float64)
    x, y = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    (0.5 * (lin(x) - y).square().sum()).backward()
    got = layer_gradients.nuclear_norms(lin)
    r = (lin(x) - y).detach()
    assert set(got) == {"weight"}  # the bias is a vector
    assert got["weight"] == pytest.approx(float(r.norm() * x.norm()), rel=1e-12)
    # two examples: the sum of singular values of the explicit 3 x 5 gradient
    G = torch.randn(3, 5, generator=g, dtype=torch.float64)
    s = torch.linalg.svdvals(G)
    assert layer_gradients.nuclear_norms(lin, {"w": G})["w"] == pytest.approx(float(s.sum()), rel=1e-12)
    with pytest.raises(ConfigError, match="no gradients"):
        layer_gradients.nuclear_norms(nn.Linear(2, 2))
