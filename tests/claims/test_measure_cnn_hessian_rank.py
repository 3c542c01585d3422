"""The CNN Hessian-rank measurement (Singh, Hofmann & Schölkopf 2023, arXiv:2305.09088)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.cnn_hessian_rank import hessian_rank, linear_cnn
from layerlab.errors import ConfigError


def test_rank_of_a_linear_least_squares_hessian_is_the_rank_of_its_design():
    # one convolution is a linear model: H = 2/(n C T) * sum of outer products of the input patches,
    # whose rank is that of the patch matrix (here made rank-deficient on purpose)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 1, 3, padding="same", bias=False)).double()
    base = torch.randn(5, 1, 8, generator=g, dtype=torch.float64)
    x = torch.cat([base, 2 * base, torch.randn(5, 1, 8, generator=g, dtype=torch.float64)], 1)  # channel 1 = 2 x channel 0
    y = torch.randn(5, 1, 8, generator=g, dtype=torch.float64)
    r, eig = hessian_rank(model, (x, y))
    patches = nn.functional.unfold(x[:, :, None, :], (1, 3), padding=(0, 1)).transpose(1, 2).reshape(-1, 9)
    assert r == int(torch.linalg.matrix_rank(patches)) == 6
    assert torch.allclose(eig.sort().values, torch.linalg.eigvalsh(2 * patches.T @ patches / y.numel()), atol=1e-12)


def test_measurement_on_small_widths_and_bad_options():
    m = get_measure("cnn_hessian_rank")
    out = m(0, widths=[1, 2, 3], length=6, n_train=8)
    for w in (1, 2, 3):
        assert out[f"params.{w}"] == 3 * (2 * w + w * w + 2 * w)
        assert 0 < out[f"rank.{w}"] <= out[f"params.{w}"]
    assert out["slope_error"] == pytest.approx(abs(out["slope"] - 0.5))
    assert linear_cnn(2, 4, 2, 3, 0)[1].weight.shape == (4, 4, 3)
    with pytest.raises(ConfigError, match="widths"):
        m(0, widths=[4])
