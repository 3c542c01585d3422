"""The deep linear unconstrained-features collapse measurement (Dang et al. 2023, arXiv:2301.00437)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.neural_collapse import ufm_gradients, ufm_loss
from layerlab.errors import ConfigError


@pytest.mark.parametrize("depth", [1, 3])
def test_gradients_match_autograd(depth):
    g = torch.Generator().manual_seed(depth)
    h = torch.randn(6, 12, generator=g, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(6, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(depth - 1)]
    ws.append(torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True))
    labels = torch.arange(3).repeat_interleave(4)
    expected = torch.autograd.grad(ufm_loss(h, ws, labels, 0.1, 0.2), [h, *ws])
    got = ufm_gradients(h.detach(), [w.detach() for w in ws], labels, 0.1, 0.2)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)


def test_trained_model_collapses_and_untrained_does_not():
    m = get_measure("deep_linear_ufm_collapse")
    trained = m(1, classes=3, per_class=4, width=6, steps=4000)
    untrained = m(1, classes=3, per_class=4, width=6, steps=1)
    assert trained["grad_norm"] < 1e-3
    assert trained["error"] < 1e-2
    assert untrained["error"] > 0.3  # random features and classifier: far from collapse


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="width"):
        get_measure("deep_linear_ufm_collapse")(0, classes=10, width=4)
