"""Layer-adaptive pruning by DP (Xu et al. 2023): the DP equals brute force on tiny instances (exact),
the total sparsity is met exactly, the distortion curves are what they say, additivity holds
approximately at small pruning amounts of a trained MLP (where the paper claims it)."""
from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.compress import apply_technique
from layerlab.compress.layer_adaptive import (allocate, distortion_curves, grid_counts, interpolate,
                                              joint_distortion, layer_adaptive_dp, output_distortion)
from layerlab.compress.magnitude import prunable_weights
from layerlab.errors import ConfigError


def _brute(curves, total):
    best = np.inf
    for ks in itertools.product(*[range(int(c[0][-1]) + 1) for c in curves]):
        if sum(ks) == total:
            best = min(best, sum(float(interpolate(c, k)) for c, k in zip(curves, ks)))
    return best


def _cost(curves, ks):
    return sum(float(interpolate(c, k)) for c, k in zip(curves, ks))


@pytest.mark.parametrize("seed", range(4))
def test_dp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(3, 9, size=3)]
    curves = []
    for n in sizes:
        counts = grid_counts(n, int(rng.integers(1, 4)))
        values = rng.random(len(counts)) * 3  # arbitrary, not monotone, not convex
        values[0] = 0.0
        curves.append((counts, values))
    for total in range(sum(sizes) + 1):
        ks = allocate(curves, total)
        assert sum(ks) == total and all(0 <= k <= n for k, n in zip(ks, sizes))
        assert _cost(curves, ks) == pytest.approx(_brute(curves, total), abs=1e-12)


def test_dp_with_floors_equals_brute_force():
    """Layers already holding zeros: counts start at the floor; brute force over k_i in [floor_i, n_i]."""
    rng = np.random.default_rng(7)
    curves = []
    for n, z in ((7, 3), (5, 0), (6, 6), (8, 2)):
        counts = grid_counts(n, 3, start=z)
        curves.append((counts, np.concatenate([[0.0], rng.random(len(counts) - 1)])))
    floors = [int(c[0][0]) for c in curves]
    for total in range(sum(floors), 27):
        best = min(_cost(curves, ks) for ks in itertools.product(*[range(int(c[0][0]), int(c[0][-1]) + 1)
                                                                   for c in curves]) if sum(ks) == total)
        ks = allocate(curves, total)
        assert sum(ks) == total and all(f <= k for f, k in zip(floors, ks))
        assert _cost(curves, ks) == pytest.approx(best, abs=1e-12)
    with pytest.raises(ConfigError, match="already holding"):
        allocate(curves, sum(floors) - 1)


def test_dp_on_grid_only_when_counts_line_up():
    # every count measured (grid = n): the DP is the plain min-plus DP, checked by brute force on the grid
    curves = [(np.arange(5), np.array([0.0, 0.1, 0.5, 0.6, 2.0])), (np.arange(4), np.array([0.0, 0.3, 0.31, 0.9]))]
    assert allocate(curves, 3) == [1, 2]  # 0.1 + 0.31; the others: 0.9, 0.8, 0.6
    assert _cost(curves, allocate(curves, 3)) == pytest.approx(min(
        _cost(curves, (a, 3 - a)) for a in range(4)), abs=1e-15)
    with pytest.raises(ConfigError, match="total"):
        allocate(curves, 8)


_CACHE: dict = {}


def _trained_mlp(seed=0):
    """A small ReLU MLP fitted to a random 3-class rule (trained once per session; callers copy it)."""
    if seed in _CACHE:
        net, x = _CACHE[seed]
        return copy.deepcopy(net), x
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 0.5).long()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest on a shared machine
    try:
        for _ in range(100):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    _CACHE[seed] = (net.eval(), x)
    return copy.deepcopy(net), x


def test_curves_are_single_layer_distortions_and_model_restored():
    net, x = _trained_mlp()
    params = prunable_weights(net)
    before = {n: p.detach().clone() for n, p in params.items()}
    curves = distortion_curves(net, params, x, grid=4)
    for n, p in params.items():
        assert torch.equal(p, before[n])
        counts, values = curves[n]
        assert counts.tolist() == grid_counts(p.numel(), 4).tolist() and values[0] == 0.0
        k = int(counts[2])
        assert values[2] == pytest.approx(joint_distortion(net, {n: k}, x), rel=1e-12)
    y = net(x).detach().double()
    assert output_distortion(y, y + 1.0) == 1.0
    assert output_distortion(y, torch.cat([y[:1] + 2.0, y[1:]]), "worst") == pytest.approx(4.0)


def test_additivity_at_small_amounts():
    """delta(k_1, k_2, k_3) ~= sum_i delta_i(k_i) at 10-20% per layer (paper: additivity); tolerance 25%."""
    net, x = _trained_mlp()
    params = prunable_weights(net)
    for frac in (0.1, 0.2):
        counts = {n: round(frac * p.numel()) for n, p in params.items()}
        joint = joint_distortion(net, counts, x)
        separate = sum(joint_distortion(net, {n: k}, x) for n, k in counts.items())
        assert joint > 0 and abs(joint - separate) <= 0.25 * separate, (frac, joint, separate)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.95])
def test_total_sparsity_exact_and_allocation_applied(level):
    net, x = _trained_mlp()
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=x))
    out = layer_adaptive_dp(net, level, ctx, grid=10)
    params = prunable_weights(out)
    n = sum(p.numel() for p in params.values())
    zeros = {name: int((p == 0).sum()) for name, p in params.items()}
    assert sum(zeros.values()) == round(level * n)
    assert zeros == out.layer_adaptive_counts
    for name, p in prunable_weights(net).items():  # magnitude inside each layer; the input is untouched
        kept = params[name] != 0
        assert torch.equal(params[name][kept], p[kept])
        if kept.any() and (~kept).any():
            assert p[kept].abs().min() >= p[~kept].abs().max()
    # the DP's choice is no worse (in modelled distortion) than the uniform allocation
    curves = distortion_curves(net, prunable_weights(net), x, grid=10)
    ks = list(out.layer_adaptive_counts.values())
    uniform = [round(level * p.numel()) for p in prunable_weights(net).values()]
    if sum(uniform) == sum(ks):
        assert _cost(list(curves.values()), ks) <= _cost(list(curves.values()), uniform) + 1e-12


def test_iterative_steps_keep_earlier_zeros():
    net, x = _trained_mlp()
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=x))
    first = layer_adaptive_dp(net, 0.5, ctx, grid=8)
    second = layer_adaptive_dp(first, 0.8, ctx, grid=8)
    n = sum(p.numel() for p in prunable_weights(net).values())
    for a, b in zip(prunable_weights(first).values(), prunable_weights(second).values()):
        assert bool(((a == 0) <= (b == 0)).all())  # every earlier zero is still zero
    assert sum(int((p == 0).sum()) for p in prunable_weights(second).values()) == round(0.8 * n)
    with pytest.raises(ConfigError, match="already holding"):
        layer_adaptive_dp(second, 0.6, ctx, grid=8)


def test_errors_name_the_fix():
    net, x = _trained_mlp()
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=x))
    with pytest.raises(ConfigError, match="calibration"):
        layer_adaptive_dp(net, 0.5, None)
    with pytest.raises(ConfigError, match="distortion"):
        apply_technique("layer_adaptive_dp", net, 0.5, ctx, distortion="median")
    with pytest.raises(ConfigError, match="grid"):
        layer_adaptive_dp(net, 0.5, ctx, grid=0)
