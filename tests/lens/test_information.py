"""The information plane (lens.information) against exact mutual informations."""
from __future__ import annotations

import math

import pytest
import torch

from layerlab.errors import ConfigError, ShapeError, UnknownNameError
from layerlab.lens import information as info


def test_plugin_mi_equals_the_exact_mi_of_the_joint_it_realizes():
    # a sample whose empirical joint is exactly p (counts / 60): the plug-in MI is the exact MI
    counts = torch.tensor([[12, 3, 0], [2, 9, 4], [1, 5, 24]])
    a = torch.cat([torch.full((int(c),), i) for i, row in enumerate(counts) for c in row])
    b = torch.cat([torch.full((int(c),), j) for row in counts for j, c in enumerate(row)])
    exact = info.mi_of_joint(counts.double())
    p = counts.double() / 60
    by_hand = sum(float(p[i, j] * math.log2(p[i, j] / (p[i].sum() * p[:, j].sum())))
                  for i in range(3) for j in range(3) if p[i, j] > 0)
    assert exact == pytest.approx(by_hand, rel=1e-12)
    assert info.mutual_information(a, b) == pytest.approx(exact, rel=1e-12, abs=1e-12)
    # independent variables (product joint realized exactly): 0; a copy: H
    x, y = torch.arange(12) % 3, torch.arange(12) // 3
    assert abs(info.mutual_information(x, y)) < 1e-12
    assert info.mutual_information(y, y) == pytest.approx(2.0, rel=1e-12)  # 4 equiprobable values
    # weights realize the same joint without repeating rows
    ai, bi = torch.arange(3).repeat_interleave(3), torch.arange(3).repeat(3)
    assert info.mutual_information(ai, bi, weights=counts.reshape(-1).double()) == pytest.approx(exact, rel=1e-12)


def test_bins_and_codes():
    t = torch.tensor([[-1.0, 0.0], [0.49, 1.0], [0.51, 0.2], [1.0, -0.6]])
    e = info.bin_edges(t, 2, "fixed", (-1.0, 1.0))
    assert torch.equal(info.binned(t, e), torch.tensor([[0, 1], [1, 1], [1, 1], [1, 0]]))  # edges -1, 0, 1
    v = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    counts = torch.bincount(info.binned(v, info.bin_edges(v, 10, "adaptive")), minlength=10)
    assert torch.equal(counts, torch.full((10,), 100))  # equal mass
    assert torch.equal(info.codes(torch.tensor([[1, 2], [3, 4], [1, 2]])), torch.tensor([0, 1, 0]))


def test_plane_of_distinct_codes_and_invariance_to_monotone_maps():
    g = torch.Generator().manual_seed(1)
    n = 256
    y = torch.randint(0, 4, (n,), generator=g)
    t = torch.randn(n, 5, generator=g, dtype=torch.float64) + y[:, None]
    plane = info.information_plane({"t": t}, y, n_bins=30, method="adaptive")
    ixt, ity = plane["t"]
    assert ixt == pytest.approx(math.log2(n), rel=1e-12)  # every example its own code: H(T) = log2 n
    assert ity == pytest.approx(info.entropy(y), rel=1e-12)  # T determines Y when all codes differ
    coarse = info.information_plane({"t": t}, y, n_bins=2, method="adaptive")["t"]
    # a strictly increasing map of the units keeps every quantile bin: the same plane, exactly
    warped = info.information_plane({"t": torch.tanh(t) ** 3 + 2 * t}, y, n_bins=2, method="adaptive")["t"]
    assert warped == coarse and coarse[0] < math.log2(n) and 0 < coarse[1] <= info.entropy(y) + 1e-12
    # a layer that is a function of another cannot carry more about Y (data processing, same bins)
    codes = info.codes(info.binned(t, info.bin_edges(t, 2, "adaptive")))
    assert info.mutual_information(codes % 3, y) <= info.mutual_information(codes, y) + 1e-12


def test_errors():
    with pytest.raises(UnknownNameError):
        info.bin_edges(torch.zeros(3), 4, "kde")
    with pytest.raises(ShapeError, match="examples"):
        info.information_plane({"t": torch.zeros(3, 2)}, torch.zeros(4))
    with pytest.raises(ConfigError, match="n_bins"):
        info.bin_edges(torch.zeros(3), 0)


def test_quantiles_by_selection_equal_torch_quantile_bit_for_bit():
    q = torch.linspace(0, 1, 31, dtype=torch.float64)
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(int(torch.randint(1, 3000, (1,), generator=g)), generator=g, dtype=torch.float64)
        if seed % 3 == 0:
            v = v.relu()  # a block of ties at 0, as a ReLU layer gives
        if seed % 5 == 0:
            v = (3 * v).round()  # many ties everywhere
        assert torch.equal(info.quantiles(v, q), torch.quantile(v, q))
    v = torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float64)  # NaN: the reference's answer
    assert torch.equal(info.quantiles(v, q).isnan(), torch.quantile(v, q).isnan())
