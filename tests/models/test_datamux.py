"""DataMux (arXiv:2202.09318): mux/demux shapes, N = 1 is the plain MLP, the mux is the stated
transform, and each index's prediction depends on its own input through the mixture."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.claims.measures._digits_mlp import relu_mlp
from layerlab.errors import ConfigError, ShapeError
from layerlab.models.datamux import DataMux

F64 = torch.float64


@pytest.mark.parametrize("mux", ["hadamard", "orthogonal"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_shapes(n, mux):
    torch.manual_seed(0)
    m = DataMux(6, 4, n=n, width=8, depth=2, mux=mux)
    x = torch.randn(3, n, 6)
    assert m(x).shape == (3, n, 4)
    assert m.multiplex(m.embed(x)).shape == (3, 8) and m.demultiplex(torch.randn(3, 8)).shape == (3, n, 8)
    assert len(m.demux) == (n if n > 1 else 0)
    assert m.predict(torch.randn(7, 6)).shape == (7, 4)  # 7 is not a multiple of n: the last group is filled


def test_n_equal_one_is_the_plain_model():
    torch.manual_seed(0)
    plain = relu_mlp(6, 8, 3, 4).double()
    dm = DataMux(6, 4, n=1, width=8, depth=3, dtype=F64)
    src = [m for m in plain if isinstance(m, nn.Linear)]
    dst = [dm.embed] + [m for m in dm.backbone if isinstance(m, nn.Linear)] + [dm.head]
    assert len(src) == len(dst)
    with torch.no_grad():
        for a, b in zip(src, dst):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    x = torch.randn(5, 6, dtype=F64)
    torch.testing.assert_close(dm(x[:, None])[:, 0], plain(x), rtol=0, atol=0)
    torch.testing.assert_close(dm.predict(x), plain(x), rtol=0, atol=0)
    assert sum(p.numel() for p in dm.parameters()) == sum(p.numel() for p in plain.parameters())


def test_the_mux_is_the_stated_transform():
    torch.manual_seed(0)
    h = torch.randn(2, 3, 8, dtype=F64)
    had = DataMux(4, 2, n=3, width=8, dtype=F64, seed=1)
    torch.testing.assert_close(had.multiplex(h), sum(h[:, i] * had.phi[i] for i in range(3)) / 3)
    torch.testing.assert_close(had.phi.norm(dim=1), torch.full((3,), math.sqrt(8), dtype=F64))
    orth = DataMux(4, 2, n=3, width=8, mux="orthogonal", dtype=F64, seed=1)
    q = orth.phi
    torch.testing.assert_close(q @ q.transpose(1, 2), torch.eye(8, dtype=F64).expand(3, 8, 8), rtol=0, atol=1e-12)
    torch.testing.assert_close(orth.multiplex(h), sum(h[:, i] @ q[i].T for i in range(3)) / math.sqrt(3))
    assert not torch.equal(DataMux(4, 2, n=3, width=8, seed=2).phi, DataMux(4, 2, n=3, width=8, seed=1).phi)


def test_each_prediction_reads_every_input_of_its_group_only():
    """Index i's logits change when any input of the group changes (they share one pass), and never
    when another group changes; predict groups consecutive examples."""
    torch.manual_seed(0)
    m = DataMux(6, 4, n=2, width=16).eval()
    x = torch.randn(4, 6)
    y = m.predict(x)
    x2 = x.clone()
    x2[1] += 1.0  # second member of the first group
    y2 = m.predict(x2)
    assert not torch.allclose(y2[0], y[0]) and not torch.allclose(y2[1], y[1])
    torch.testing.assert_close(y2[2:], y[2:], rtol=0, atol=0)
    torch.testing.assert_close(m.predict(x), m(x.reshape(2, 2, 6)).reshape(4, 4), rtol=0, atol=0)


def test_bad_options_and_shapes():
    with pytest.raises(ConfigError, match="mux"):
        DataMux(4, 2, mux="learned")
    with pytest.raises(ConfigError, match="n, width"):
        DataMux(4, 2, n=0)
    with pytest.raises(ShapeError, match="N = n = 2"):
        DataMux(4, 2, n=2)(torch.randn(3, 3, 4))
