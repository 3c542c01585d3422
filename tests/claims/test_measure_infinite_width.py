"""The infinite-width NTK measurement (Jacot et al. 2018, arXiv:1806.07572, Theorem 1)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.errors import ConfigError
from layerlab.lens import ntk
from layerlab.lens.theory.infinite_width import FullyConnected
from layerlab.lens.theory.infinite_width import ntk as ntk_limit


def test_error_is_the_relative_frobenius_gap_and_falls_with_width():
    out = get_measure("ntk_infinite_width")(1, widths=[16, 512], depth=3, n_inputs=6, in_features=4)
    # recompute the widest one by the Jacobian method
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    opts = dict(depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.1)
    net = FullyConnected(4, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(1_000_003 + 512), **opts)
    lim = ntk_limit(x, **opts)
    ref = float((ntk.empirical(net, x, output="trace") - lim).norm() / lim.norm())
    assert out["error"] == pytest.approx(ref, rel=1e-9)
    assert out["error@512"] < out["error@16"]
    assert out["slope"] < 0


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="two distinct widths"):
        get_measure("ntk_infinite_width")(0, widths=[64, 64])
    with pytest.raises(ConfigError, match="depth >= 2"):
        get_measure("ntk_infinite_width")(0, depth=1)
