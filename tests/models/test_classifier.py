"""The vector classifier backbone."""
import math

import pytest
import torch

from layerlab.blocks.channels import MLP
from layerlab.errors import ConfigError, ShapeError
from layerlab.spec import ModelSpec
from layerlab.models.classifier import Classifier
from layerlab.models.sequence import Residual


def classifier(seed=0, in_features=10, n_classes=4, **spec):
    torch.manual_seed(seed)
    spec = {"backbone": "classifier", "d_model": 16, "n_layers": 3} | spec
    return Classifier(ModelSpec(**spec), in_features=in_features, n_classes=n_classes)


@pytest.mark.parametrize("channel", ["mlp", "swiglu"])
@pytest.mark.parametrize("place", ["pre", "post", "peri"])
def test_shapes_and_structure(place, channel):
    c = classifier(norm_place=place, channel=channel)
    assert c(torch.randn(5, 10)).shape == (5, 4)
    assert len(c.layers) == 3 and all(isinstance(l, Residual) and l.place == place for l in c.layers)
    assert isinstance(c.norm, torch.nn.Identity) == (place == "post")


def test_placements_differ():
    x = torch.randn(5, 10)
    outs = [classifier(seed=0, norm_place=p)(x) for p in ("pre", "post", "peri")]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])


def test_input_checks():
    c = classifier()
    with pytest.raises(ShapeError, match="in_features = 10"):
        c(torch.randn(5, 9))
    with pytest.raises(ShapeError):
        c(torch.randn(10))
    with pytest.raises(ConfigError):
        classifier(in_features=0)


def test_keeps_block_init_and_sets_its_own(monkeypatch):
    def fill(self):
        with torch.no_grad():
            for p in self.parameters():
                p.fill_(0.5)
    monkeypatch.setattr(MLP, "reset_parameters", fill)
    c = classifier(in_features=400, d_model=64)
    assert all(torch.all(p == 0.5) for layer in c.layers for p in layer.f.parameters())
    assert abs(c.proj.weight.std().item() * math.sqrt(400) - 1) < 0.05
    assert torch.count_nonzero(c.proj.bias) == 0 and torch.count_nonzero(c.head.bias) == 0


def test_channel_options_reach_the_blocks():
    c = classifier(channel_options={"hidden": 7})
    assert all(layer.f.hidden == 7 for layer in c.layers)


def test_learns_a_separable_problem():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 10, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    c = classifier()
    opt = torch.optim.Adam(c.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(c(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (c(x).argmax(-1) == y).float().mean() > 0.9
