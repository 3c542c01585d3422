"""Hessian-aware mixed precision: the dynamic program equals brute force and meets the budget; the
Hessian terms equal the exact quadratic forms of a dense Hessian; the technique returns a copy."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.compress import TECHNIQUES, CompressContext, apply_technique
from layerlab.compress.mixed_precision import (allocate_bits, allocate_bits_reference, hessian_mixed_precision,
                                               mixed_precision_allocation, sensitivity_tables)
from layerlab.compress.quantize import QuantizedLinear, dequantize, symmetric_rtn
from layerlab.errors import ConfigError


def _instance(L, B, seed, pairs):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 6, (L,), generator=g).tolist()
    costs = torch.rand(L, B, generator=g, dtype=torch.float64).tolist()
    pair = (torch.randn(L - 1, B, B, generator=g, dtype=torch.float64) * 0.5).tolist() if pairs else None
    return sizes, costs, pair


@pytest.mark.parametrize("L,pairs", [(1, False), (3, False), (3, True), (4, True), (5, True)])
def test_dynamic_program_equals_brute_force(L, pairs):
    choices = (2, 3, 5, 8)
    for seed in range(6):
        sizes, costs, pair = _instance(L, len(choices), seed, pairs)
        for avg in (2, 3, 4, 6, 8):
            budget = avg * sum(sizes)
            bits, value = allocate_bits(sizes, costs, choices, budget, pair)
            ref_bits, ref_value = allocate_bits_reference(sizes, costs, choices, budget, pair)
            assert value == pytest.approx(ref_value, abs=1e-12) and bits == ref_bits
            assert sum(n * b for n, b in zip(sizes, bits)) <= budget  # the budget is met
            js = [choices.index(b) for b in bits]  # the objective is the one of the returned bits
            recomputed = sum(costs[l][j] for l, j in enumerate(js))
            recomputed += sum(pair[l][js[l]][js[l + 1]] for l in range(L - 1)) if pair else 0.0
            assert value == pytest.approx(recomputed, abs=1e-12)


def test_decreasing_costs_fill_the_budget():
    choices = (2, 3, 4, 6, 8)
    sizes = [4, 3, 5]
    costs = [[10.0 / b**2 * (l + 1) for b in choices] for l in range(3)]
    for avg in (2, 3, 4, 5, 7):
        budget = avg * sum(sizes)
        bits, _ = allocate_bits(sizes, costs, choices, budget)
        used = sum(n * b for n, b in zip(sizes, bits))
        # no single layer can move up one choice within the budget (else the optimum would take it)
        for l, b in enumerate(bits):
            if b != choices[-1]:
                nxt = choices[choices.index(b) + 1]
                assert used + sizes[l] * (nxt - b) > budget
    sizes, weights = [4, 4, 4], [1.0, 1.0, 10.0]  # the last layer ten times as sensitive
    costs = [[wl * 10.0 / b**2 for b in choices] for wl in weights]
    bits, _ = allocate_bits(sizes, costs, choices, 3 * sum(sizes))
    assert bits[2] > 3 and sum(bits) == 9  # it takes bits from the others, the budget still exactly met


def test_infeasible_and_malformed_problems():
    with pytest.raises(ConfigError, match="no allocation fits"):
        allocate_bits([4, 4], [[1, 0], [1, 0]], (3, 4), 23)
    with pytest.raises(ConfigError, match="costs must be"):
        allocate_bits([4, 4], [[1, 0]], (3, 4), 40)
    with pytest.raises(ConfigError, match="pair_costs"):
        allocate_bits([4, 4], [[1, 0], [1, 0]], (3, 4), 40, pair_costs=[])


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def _ctx(n=16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g)
    return CompressContext(task=None, calibration=(x, y), generator=g,
                           loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]))


def _dense_hessian(net, ctx):
    names = ["0.weight", "2.weight", "4.weight"]
    params = dict(net.named_parameters())
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    shapes = [params[n].shape for n in names]

    def loss(v):
        ws, i = [], 0
        for s in shapes:
            ws.append(v[i:i + s.numel()].reshape(s))
            i += s.numel()
        h = ctx.calibration[0]
        h = torch.tanh(F.linear(h, ws[0], net[0].bias))
        h = torch.tanh(F.linear(h, ws[1], net[2].bias))
        return F.cross_entropy(F.linear(h, ws[2], net[4].bias), ctx.calibration[1])

    H = torch.autograd.functional.hessian(loss, flat)
    ends = torch.tensor([s.numel() for s in shapes]).cumsum(0).tolist()
    return H, [slice(e - s.numel(), e) for e, s in zip(ends, shapes)]


def _delta(w, b):
    return (dequantize(*symmetric_rtn(w, b)) - w).detach().reshape(-1)


def test_hessian_terms_equal_the_dense_quadratic_forms():
    net, ctx = _mlp(), _ctx()
    choices = (2, 3, 8)
    H, sl = _dense_hessian(net, ctx)
    ws = [net[i].weight for i in (0, 2, 4)]
    costs, pair = sensitivity_tables(net, ctx, ["0", "2", "4"], choices, curvature="block", interlayer=True)
    for l, w in enumerate(ws):
        for j, b in enumerate(choices):
            d = _delta(w, b)
            assert costs[l][j] == pytest.approx(0.5 * float(d @ H[sl[l], sl[l]] @ d), rel=1e-10, abs=1e-14)
    for l in range(2):
        for (j, b), (k, c) in itertools.product(enumerate(choices), repeat=2):
            dl, dm = _delta(ws[l], b), _delta(ws[l + 1], c)
            assert pair[l][j][k] == pytest.approx(float(dl @ H[sl[l], sl[l + 1]] @ dm), rel=1e-10, abs=1e-14)
    # HAWQ-V2 term: tr(H_ll)/n_l ||delta||^2 / 2; Hutch++ with a sketch as wide as the layer is exact
    tr_costs, none = sensitivity_tables(net, ctx, ["0", "2", "4"], choices, curvature="trace", interlayer=False,
                                        n_samples=60)
    assert none is None
    for l, w in enumerate(ws):
        t = float(H[sl[l], sl[l]].diagonal().sum())
        for j, b in enumerate(choices):
            d = _delta(w, b)
            assert tr_costs[l][j] == pytest.approx(0.5 * t / d.numel() * float(d @ d), rel=1e-8)


def test_technique_returns_a_copy_at_the_allocated_widths():
    net, ctx = _mlp(), _ctx()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plan = mixed_precision_allocation(net, 4, ctx, bit_choices=(2, 3, 4, 6, 8))
    out = hessian_mixed_precision(net, 4, ctx, bit_choices=(2, 3, 4, 6, 8))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    widths = tuple(out[i].bits_per_weight for i in (0, 2, 4))
    assert all(isinstance(out[i], QuantizedLinear) for i in (0, 2, 4)) and widths == plan.bits
    assert plan.average_bits <= 4 and sum(n * b for n, b in zip(plan.sizes, plan.bits)) <= plan.budget == 4 * 30
    assert TECHNIQUES.entry("hessian_mixed_precision").paper.arxiv == "2306.04879"
    apply_technique("hessian_mixed_precision", net, 3.0, ctx, curvature="trace", interlayer=False)


def test_bad_options():
    net, ctx = _mlp(), _ctx()
    with pytest.raises(ConfigError, match="curvature='block'"):
        hessian_mixed_precision(net, 4, ctx, curvature="trace", interlayer=True)
    with pytest.raises(ConfigError, match="below the smallest"):
        hessian_mixed_precision(net, 2, ctx, bit_choices=(3, 4))
    with pytest.raises(ConfigError, match="curvature must be"):
        hessian_mixed_precision(net, 4, ctx, curvature="diag")
    with pytest.raises(ConfigError, match="calibration"):
        hessian_mixed_precision(net, 4, None)
    with pytest.raises(ConfigError, match="bits"):
        hessian_mixed_precision(net, 4, ctx, bit_choices=(1, 4))
