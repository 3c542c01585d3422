"""The batch-Hessian extremal-eigenvalue measurement (Granziol et al., arXiv:2006.09092)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.batch_hessian import extremes
from layerlab.errors import ConfigError


def test_extremes_are_the_dense_hessians_extreme_eigenvalues():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    shapes = [p.shape for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]

    def loss(t):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            parts[n] = t[i:i + k].reshape(s)
            i += k
        return nn.functional.cross_entropy(torch.func.functional_call(model, parts, (x,)), y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta, vectorize=True))
    top, bottom = extremes(model, (x, y), torch.Generator().manual_seed(0))
    assert top == pytest.approx(float(eig[-1]), rel=1e-7)
    assert bottom == pytest.approx(float(eig[0]), rel=1e-6, abs=1e-10)


def test_shortfall_is_the_largest_relative_gap_and_options_are_checked():
    m = get_measure("batch_hessian_extremes")
    out = m(0, n_train=40, width=4, train_steps=5, batch_sizes=[5, 20], n_batches=2, lanczos_iter=20)
    gaps = [1 - out[f"top.{b}"] / abs(out["top.full"]) for b in (5, 20)]
    gaps += [1 - abs(out[f"bottom.{b}"]) / abs(out["bottom.full"]) for b in (5, 20)]
    assert out["shortfall"] == pytest.approx(max(gaps), rel=1e-12)
    with pytest.raises(ConfigError, match="batch sizes"):
        m(0, n_train=40, batch_sizes=[40])
