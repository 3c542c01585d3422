"""Per-block contributions and skip effects (lens.depth) against direct computations."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import depth


class Res(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + torch.tanh(h @ self.a.T)


class Toy(nn.Module):
    def __init__(self, d: int = 6, n_blocks: int = 3, classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.blocks = nn.ModuleList(Res(torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5) for _ in range(n_blocks))
        self.head = nn.Linear(d, classes, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_contributions_and_skips_equal_the_direct_computation():
    model = Toy()
    x = torch.randn(5, 7, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got, skips = depth.contributions(model, x), depth.skip_effects(model, x)
    with torch.no_grad():
        h, want = x, {}
        for i, b in enumerate(model.blocks):
            delta = b(h) - h
            want[f"blocks.{i}"] = float((delta.norm(dim=-1) / h.norm(dim=-1)).mean())
            h = h + delta
        full = model.head(h)
        for i in range(3):
            h = x
            for j, b in enumerate(model.blocks):
                h = h if j == i else b(h)
            z = model.head(h)
            p, q = full.softmax(-1), z.softmax(-1)
            kl = float((p * (p.log() - q.log())).sum(-1).mean())
            change = float(((full - z).norm(dim=-1) / full.norm(dim=-1)).mean())
            assert skips[f"blocks.{i}"]["kl"] == pytest.approx(kl, rel=1e-12)
            assert skips[f"blocks.{i}"]["logit_change"] == pytest.approx(change, rel=1e-12)
    assert got == pytest.approx(want, rel=1e-12)
    # a block whose update is zero contributes nothing and skipping it changes nothing
    with torch.no_grad():
        model.blocks[1].a.zero_()
    assert depth.contributions(model, x)["blocks.1"] == 0.0
    assert depth.skip_effects(model, x)["blocks.1"] == {"kl": 0.0, "logit_change": 0.0}
    # the mask selects positions
    mask = torch.zeros(5, 7, dtype=torch.bool)
    mask[:, -1] = True
    last = depth.skip_effects(model, x, mask=mask)["blocks.0"]["kl"]
    assert last != pytest.approx(depth.skip_effects(model, x)["blocks.0"]["kl"])


def test_errors():
    with pytest.raises(ConfigError, match="no residual blocks"):
        depth.contributions(nn.Linear(3, 3), torch.zeros(2, 3))
    model = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ShapeError, match="its shape"):
        depth.contributions(model, torch.zeros(2, 3), blocks=["0"])
