"""The stacked forward-mode derivative (lens._tangent, the fast form of line_regions' z') against
the two-reverse-pass JVP (regions._jvp, the reference form), and the region walks they drive."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import _tangent, regions
from layerlab.models.classifier import Classifier
from layerlab.spec import ModelSpec


def mlp(sizes: list[int], seed: int, bias: bool = True) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(m, n, bias=bias, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, m, generator=g, dtype=torch.float64) * (2 / m) ** 0.5)
            if bias:
                lin.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)
        layers += [lin] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def classifier(seed: int, norm: str, place: str, approximate: str = "none") -> Classifier:
    torch.manual_seed(seed)
    spec = ModelSpec(backbone="classifier", d_model=16, n_layers=2, norm=norm, norm_place=place,
                     channel_options={"activation_options": {"approximate": approximate}})
    net = Classifier(spec, in_features=5, n_classes=3).double()
    with torch.no_grad():  # norm gains and biases away from their init, so every term of the rules counts
        for name, p in net.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return net.eval()


def autograd_jvp(net: nn.Module, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        y = net(x)
        return y.detach(), regions._jvp(y, x, v)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


NETS = [
    ("relu mlp", lambda: mlp([4, 9, 7, 8, 3], seed=0)),
    ("relu mlp, no bias", lambda: mlp([4, 9, 9, 2], seed=1, bias=False)),
    ("classifier rmsnorm pre", lambda: classifier(0, "rmsnorm", "pre")),
    ("classifier layernorm post", lambda: classifier(1, "layernorm", "post")),
    ("classifier rmsnorm peri, tanh gelu", lambda: classifier(2, "rmsnorm", "peri", "tanh")),
    ("classifier layernorm peri", lambda: classifier(3, "layernorm", "peri")),
]


@pytest.mark.parametrize("name,make", NETS, ids=[n for n, _ in NETS])
def test_stacked_forward_equals_two_reverse_passes(name, make):
    net = make()
    assert _tangent.stacked_supported(net)
    g = torch.Generator().manual_seed(7)
    n_in = next(net.parameters()).shape[1]
    x = torch.randn(11, n_in, generator=g, dtype=torch.float64)
    v = torch.randn(11, n_in, generator=g, dtype=torch.float64)
    y, dy = _tangent.stacked_forward(net, x, v)
    y_ref, dy_ref = autograd_jvp(net, x, v)
    assert rel_err(y, y_ref) <= 1e-12
    assert rel_err(dy, dy_ref) <= 1e-10
    assert float(dy_ref.abs().max()) > 1e-3  # the derivative is not trivially zero
    # the parts' own forwards are back after the call
    assert all("forward" not in vars(m) for m in net.modules())
    assert torch.equal(net(x), y_ref)


def test_supported_and_errors():
    assert not _tangent.stacked_supported(nn.Sequential(nn.Linear(2, 3), nn.SiLU(), nn.Linear(3, 1)))
    assert not _tangent.stacked_supported(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.ReLU(), nn.Linear(3, 1)))
    silu = nn.Sequential(nn.Linear(2, 3), nn.SiLU(), nn.Linear(3, 1)).double()
    a, b = torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="no rule for .*SiLU"):
        regions.line_regions(silu, a, b, derivative="stacked")
    with pytest.raises(ConfigError, match="derivative must be"):
        regions.line_regions(silu, a, b, derivative="forward")
    # auto falls back to the reference form where there is no rule
    auto, ref = regions.line_regions(silu, a, b)[0], regions.line_regions(silu, a, b, derivative="autograd")[0]
    assert auto.n_regions == ref.n_regions and torch.equal(auto.breakpoints, ref.breakpoints)


def walk_pair(net: nn.Module, starts: torch.Tensor, ends: torch.Tensor, **kw) -> list[tuple]:
    fast = regions.line_regions(net, starts, ends, derivative="stacked", **kw)
    ref = regions.line_regions(net, starts, ends, derivative="autograd", **kw)
    return list(zip(fast, ref))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_walk_same_regions_on_random_relu_nets(seed):
    g = torch.Generator().manual_seed(100 + seed)
    sizes = [[3, 10, 2], [2, 8, 8, 8, 3], [4, 6, 12, 5, 6, 1], [2, 16, 16, 2]][seed]
    net = mlp(sizes, seed=seed, bias=seed != 3)
    starts = torch.randn(3, sizes[0], generator=g, dtype=torch.float64) * 3
    ends = -starts + 0.1 * torch.randn(3, sizes[0], generator=g, dtype=torch.float64)
    total = 0
    for fast, ref in walk_pair(net, starts, ends):
        assert fast.n_regions == ref.n_regions and fast.n_pieces() == ref.n_pieces()
        assert torch.allclose(fast.breakpoints, ref.breakpoints, rtol=0, atol=1e-10)
        assert torch.allclose(fast.slopes, ref.slopes, rtol=1e-10, atol=1e-12)
        total += fast.n_regions
    for i, (fast, _) in enumerate(walk_pair(net, starts, ends, grid=1)):  # the plain sequential walk too
        exact = regions.mlp_line_regions(*regions.mlp_weights(net), starts[i], ends[i])
        assert fast.n_regions == exact.n_regions
        assert torch.allclose(fast.breakpoints, exact.breakpoints, rtol=0, atol=1e-10)
    assert total > 3 * 4  # not trivial


def test_degenerate_cases():
    net = mlp([1, 4, 1], seed=0)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [0.0], [-2.0], [1.0]], dtype=torch.float64))  # unit 1: constant
        net[0].bias.copy_(torch.tensor([-0.5, 0.3, 0.5, -0.25], dtype=torch.float64))
        net[2].weight[0, 3] = 0.0  # unit 3 switches without bending f
    starts = torch.tensor([[0.0], [0.0], [0.2], [0.5]], dtype=torch.float64)
    ends = torch.tensor([[1.0], [0.0], [0.2], [2.0]], dtype=torch.float64)  # rows 1-2: zero-length segments
    # row 0: unit 0 switches at t = 0.5, units 2 and 3 both at t = 0.25 (one boundary), and the
    # grid points t = 0.25 (grid 2) and 0.5 (grid 1) lie exactly on boundaries, where the pattern
    # (z = 0 is off) holds on no interval
    for i, (fast, ref) in enumerate(walk_pair(net, starts, ends, grid=2) + walk_pair(net, starts, ends, grid=1)):
        i = i % 4
        exact = regions.mlp_line_regions(*regions.mlp_weights(net), starts[i], ends[i])
        assert fast.n_regions == ref.n_regions == exact.n_regions
        assert fast.n_pieces() == ref.n_pieces() == exact.n_pieces()
        assert torch.allclose(fast.breakpoints, exact.breakpoints, rtol=0, atol=1e-10)
    fast0 = walk_pair(net, starts, ends, grid=2)[0][0]
    assert fast0.breakpoints.tolist() == pytest.approx([0.25, 0.5], abs=1e-10)
    assert fast0.n_pieces() == 3
    assert [f.n_regions for f, _ in walk_pair(net, starts, ends)][1:3] == [1, 1]


@pytest.mark.parametrize("name,make", NETS[2:], ids=[n for n, _ in NETS[2:]])
def test_smooth_proxy_same_counts(name, make):
    """On smooth networks the walk counts a proxy that depends on the points it visits: both forms
    visit the same points and find the same regions."""
    net = make()
    g = torch.Generator().manual_seed(5)
    starts, ends = torch.randn(2, 5, generator=g, dtype=torch.float64) * 2, torch.randn(2, 5, generator=g,
                                                                                        dtype=torch.float64) * 2
    for fast, ref in walk_pair(net, starts, ends, grid=16):
        assert fast.n_regions == ref.n_regions > 5
        assert fast.n_pieces() == ref.n_pieces()
        assert torch.allclose(fast.breakpoints, ref.breakpoints, rtol=0, atol=1e-10)
