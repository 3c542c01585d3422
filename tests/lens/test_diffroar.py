"""DiffROAR (lens.diffroar) on a linear model whose discriminative coordinates are known exactly."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import diffroar


def test_input_gradients_of_a_linear_model_are_its_weights():
    lin = nn.Linear(4, 3, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    assert torch.allclose(diffroar.input_gradients(lin, x, y), lin.weight.detach()[y].abs(), atol=0)


def test_masks_keep_the_top_or_bottom_k_and_break_ties_by_index():
    a = torch.tensor([[0.1, 0.9, 0.5, 0.5], [3.0, 2.0, 1.0, 0.0]])
    assert diffroar.keep_mask(a, 0.5).tolist() == [[False, True, True, False], [True, True, False, False]]
    assert diffroar.keep_mask(a, 0.5, top=False).tolist() == [[True, False, True, False], [False, False, True, True]]
    with pytest.raises(ConfigError, match="k must"):
        diffroar.keep_mask(a, 1.0)


def test_attributions_on_the_signal_coordinates_give_positive_diffroar():
    # labels depend on coordinates 0-1 only; an attribution that ranks them first keeps the signal
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long()
    good = torch.zeros_like(x)
    good[:, :2] = 1.0

    def nearest_mean(xtr, ytr, xte, yte):  # an exact, deterministic "retraining": class means
        mu = torch.stack([xtr[ytr == c].mean(0) for c in (0, 1)])
        return float(((torch.cdist(xte, mu).argmin(1)) == yte).double().mean())

    out = diffroar.diffroar(good[:300], good[300:], x[:300], y[:300], x[300:], y[300:], 0.25, nearest_mean)
    assert out["top"] > 0.9 and out["bottom"] == pytest.approx(0.5, abs=0.12)
    assert out["diffroar"] == pytest.approx(out["top"] - out["bottom"])
    bad = diffroar.diffroar(-good[:300], -good[300:], x[:300], y[:300], x[300:], y[300:], 0.25, nearest_mean)
    assert bad["diffroar"] == pytest.approx(-out["diffroar"])  # the reversed ranking swaps the two
