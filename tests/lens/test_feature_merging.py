"""Iterative Feature Merging (lens.feature_merging, arXiv:2310.06756): planted positively rescaled
duplicates merge and the function is preserved exactly; negatively scaled ones do not merge."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import feature_merging as fm


def planted(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:
    """A ReLU MLP 5-13-11-3 whose hidden layers are 6 (then 4) generic units, 5 positive multiples of
    them, a negated copy of one and a zero unit, shuffled; returns the distinct feature counts."""
    g = torch.Generator().manual_seed(seed)
    ws, bs, distinct, fan_in = [], [], [], 5
    for n in (6, 4):
        W, b = torch.randn(n, fan_in, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        src = torch.randint(0, n, (5,), generator=g)
        c = torch.rand(5, generator=g, dtype=torch.float64) * 3 + 0.1
        W = torch.cat([W, c[:, None] * W[src], -W[:1], torch.zeros(1, fan_in, dtype=torch.float64)])
        b = torch.cat([b, c * b[src], -b[:1], torch.zeros(1, dtype=torch.float64)])
        perm = torch.randperm(len(W), generator=g)
        ws.append(W[perm])
        bs.append(b[perm])
        distinct.append(n + 1)  # the originals and the negated copy; the zero unit is removed
        fan_in = len(W)
    ws.append(torch.randn(3, fan_in, generator=g, dtype=torch.float64))
    bs.append(torch.randn(3, generator=g, dtype=torch.float64))
    return ws, bs, distinct


def forward(ws: list[torch.Tensor], bs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for W, b in zip(ws[:-1], bs[:-1]):
        x = (x @ W.T + b).clamp_min(0)
    return x @ ws[-1].T + bs[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merging_planted_duplicates_preserves_the_function_exactly(seed):
    ws, bs, distinct = planted(seed)
    res = fm.merge_features(ws, bs, beta=0.0)
    assert res.widths == [13, 11] and res.complexity == distinct == [7, 5]
    x = torch.randn(500, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
    ref, out = forward(ws, bs, x), forward(res.weights, res.biases, x)
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-10
    before, after = res.parameters
    assert before == fm.parameter_count(ws) and after == 5 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    # every group holds units with one direction; the negated copy is alone
    for W, b, groups in zip([ws[0]], [bs[0]], res.groups[:1]):
        R = torch.cat([W, b[:, None]], 1)
        for g in groups:
            U = R[g] / R[g].norm(dim=1, keepdim=True)
            assert float((U - U[0]).abs().max()) < 1e-12


def test_no_merge_among_generic_features_and_beta_merges_near_duplicates():
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(2, 8, generator=g, dtype=torch.float64)]
    bs = [torch.randn(8, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)]
    assert fm.feature_complexity(ws, bs, 0.0) == [8]
    # a near-duplicate (direction 1e-3 away) merges at beta = 1e-2, and the output moves by at most
    # |relu(a) - relu(b)| <= |a - b| through the folded weights (small)
    ws[0] = torch.cat([ws[0], 2.0 * ws[0][:1] + 1e-3 * torch.randn(1, 4, generator=g, dtype=torch.float64)])
    bs[0] = torch.cat([bs[0], 2.0 * bs[0][:1]])
    ws[1] = torch.cat([ws[1], torch.randn(2, 1, generator=g, dtype=torch.float64)], 1)
    assert fm.feature_complexity(ws, bs, 0.0) == [9] and fm.feature_complexity(ws, bs, 1e-2) == [8]
    assert fm.feature_complexity(ws, bs, 10.0) == [1]  # every direction within 2: one feature
    res = fm.merge_features(ws, bs, 1e-2)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    assert float((forward(res.weights, res.biases, x) - forward(ws, bs, x)).abs().max()) < 0.05


def test_merge_model_returns_a_new_module_with_the_same_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight[3] = 0.5 * net[0].weight[1]
        net[0].bias[3] = 0.5 * net[0].bias[1]
    before = [p.detach().clone() for p in net.parameters()]
    small, res = fm.merge_model(net)
    assert res.complexity == [3] and small[0].out_features == 3
    x = torch.randn(10, 3)
    assert torch.allclose(small(x), net(x), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_bad_inputs_are_clear_errors():
    W = [torch.zeros(2, 2)]
    with pytest.raises(ConfigError, match="at least one hidden layer"):
        fm.merge_features(W, [torch.zeros(2)])
    with pytest.raises(ConfigError, match="beta"):
        fm.merge_features(W * 2, [torch.zeros(2)] * 2, beta=-1.0)
