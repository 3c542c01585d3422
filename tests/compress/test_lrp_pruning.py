"""Pruning by Explaining (Yeom et al.): LRP conserves relevance layer to layer (exact for z+ and for
epsilon = 0 without biases), LRP-0 equals gradient x input on bias-free ReLU nets, the Taylor score
equals the autograd product, and the pruned MLP is exactly the original with those units silenced."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from layerlab.compress import apply_technique
from layerlab.compress.lrp_pruning import (linear_layers, lrp, lrp_pruning, lrp_scores, select_units, taylor_pruning,
                                           taylor_scores, unit_magnitude_pruning, weight_scores)
from layerlab.errors import ConfigError


def _mlp(bias=True, seed=0, dtype=torch.float64):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(6, 9, bias=bias), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(9, 7, bias=bias), nn.ReLU(), nn.Linear(7, 4, bias=bias))
    return net.to(dtype).eval()


def _data(n=12, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 6, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def test_epsilon0_conserves_relevance_exactly_without_biases():
    net, (x, y) = _mlp(bias=False), _data()
    rel = lrp(net, x, y, rule="epsilon", epsilon=0.0)
    assert [r.shape[1] for r in rel] == [6, 9, 7, 4]
    for lower, upper in zip(rel[:-1], rel[1:]):
        assert torch.allclose(lower.sum(1), upper.sum(1), rtol=1e-10, atol=1e-12)
    # with biases the bias absorbs relevance: no longer conserved
    rel_b = lrp(_mlp(bias=True), x, y, rule="epsilon", epsilon=0.0)
    assert (rel_b[0].sum(1) - rel_b[-1].sum(1)).abs().max() > 1e-6


def test_zplus_conserves_relevance_exactly():
    net, (x, y) = _mlp(bias=True), _data()  # z+ ignores biases; inputs are nonnegative
    with torch.no_grad():                   # positive biases: every hidden unit active, every z+ > 0
        net[1].bias.fill_(0.5)
        net[4].bias.fill_(0.5)
    rel = lrp(net, x, y, rule="zplus")
    for lower, upper in zip(rel[:-1], rel[1:]):
        assert torch.allclose(lower.sum(1), upper.sum(1), rtol=1e-10, atol=1e-12)
    logits = net(x)
    assert torch.equal(rel[-1].sum(1), logits.gather(1, y.view(-1, 1)).squeeze(1))  # R_L = true-class logit
    # a positive start and nonnegative a, w+ give nonnegative relevances everywhere
    ones = lrp(net, x, y, rule="zplus", start="onehot")
    assert all(bool((r >= 0).all()) for r in ones)
    assert torch.allclose(ones[0].sum(1), torch.ones(12, dtype=torch.float64), rtol=1e-10)


def test_zplus_drops_relevance_only_where_no_positive_input():
    net, (x, y) = _mlp(bias=True), _data()  # default init: some units get no positive input (z+ = 0)
    rel = lrp(net, x, y, rule="zplus")
    acts = [x, torch.relu(net[1](x)), torch.relu(net[4](torch.relu(net[1](x))))]
    for layer, a, lower, upper in zip((net[1], net[4], net[6]), acts, rel[:-1], rel[1:]):
        zp = a @ layer.weight.clamp(min=0).T
        kept = (upper * (zp > 0)).sum(1)    # relevance of units with a positive input is passed down
        assert torch.allclose(lower.sum(1), kept, rtol=1e-10, atol=1e-12)


def test_lrp0_equals_gradient_times_input_without_biases():
    net, (x, y) = _mlp(bias=False), _data()
    rel = lrp(net, x, y, rule="epsilon", epsilon=0.0)
    x_ = x.clone().requires_grad_(True)
    h1 = torch.relu(x_ @ net[1].weight.T)
    h1.retain_grad()
    h2 = torch.relu(h1 @ net[4].weight.T)
    h2.retain_grad()
    out = h2 @ net[6].weight.T
    out.gather(1, y.view(-1, 1)).sum().backward()
    for r, a in ((rel[0], x_), (rel[1], h1), (rel[2], h2)):
        assert torch.allclose(r, a.detach() * a.grad, rtol=1e-10, atol=1e-12)


def test_taylor_score_equals_autograd_product():
    net, (x, y) = _mlp(bias=True), _data()
    x_ = x.clone()
    h1 = torch.relu(net[1](x_))
    h1.retain_grad()
    h2 = torch.relu(net[4](h1))
    h2.retain_grad()
    nn.functional.cross_entropy(net[6](h2), y).backward()
    for score, a in zip(taylor_scores(net, x, y), (h1, h2)):
        ref = (a.detach() * a.grad).sum(0).abs()
        assert torch.allclose(score, ref / ref.norm(), rtol=1e-10, atol=1e-14)


def test_scores_normalised_per_layer():
    net, (x, y) = _mlp(), _data()
    for s in lrp_scores(net, x, y):
        assert float(s.sum()) == pytest.approx(1.0, abs=1e-12)
    for s in weight_scores(net):
        assert float(s.sum()) == pytest.approx(1.0, abs=1e-12)
        assert bool((s > 0).all())


def test_select_units_global_lowest_keeping_one_per_layer():
    scores = [torch.tensor([0.5, 0.1, 0.4]), torch.tensor([0.05, 0.02])]
    assert [k.tolist() for k in select_units(scores, 1)] == [[0, 1, 2], [0]]   # 0.02 goes
    # then 0.05 would empty the second layer: skipped, 0.1 goes, then 0.4
    assert [k.tolist() for k in select_units(scores, 2)] == [[0, 2], [0]]
    assert [k.tolist() for k in select_units(scores, 3)] == [[0], [0]]
    assert [k.tolist() for k in select_units(scores, 0)] == [[0, 1, 2], [0, 1]]
    with pytest.raises(ConfigError, match="keeping one per layer"):
        select_units(scores, 4)


@pytest.mark.parametrize("technique", ["lrp_pruning", "taylor_pruning", "unit_magnitude_pruning"])
def test_pruned_model_is_the_original_with_units_silenced(technique):
    net, (x, y) = _mlp(dtype=torch.float64), _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=x, targets=y))
    out = apply_technique(technique, net, 0.5, ctx)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # input untouched
    kept = [torch.tensor(k) for k in out.kept_units]
    assert sum(len(k) for k in kept) == 16 - round(0.5 * 16)
    assert [out[1].out_features, out[4].out_features] == [len(k) for k in kept]
    # the original with the removed units' activations zeroed gives the same logits
    m1 = torch.zeros(9, dtype=torch.float64).index_fill_(0, kept[0], 1.0)
    m2 = torch.zeros(7, dtype=torch.float64).index_fill_(0, kept[1], 1.0)
    ref = net[6](torch.relu(net[4](torch.relu(net[1](x)) * m1)) * m2)
    assert torch.allclose(out(x), ref, rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in out.parameters()) < sum(p.numel() for p in net.parameters())


def test_lrp_pruning_removes_the_least_relevant():
    net, (x, y) = _mlp(), _data()
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=x, targets=y))
    scores = torch.cat(lrp_scores(net, x, y))
    out = lrp_pruning(net, 0.25, ctx)
    kept = torch.cat([torch.tensor(out.kept_units[0]), 9 + torch.tensor(out.kept_units[1])])
    removed = torch.tensor([i for i in range(16) if i not in set(kept.tolist())])
    assert len(removed) == 4 and scores[removed].max() <= scores[kept].min()


def test_errors_name_the_fix():
    ctx = SimpleNamespace(calibration=SimpleNamespace(inputs=torch.rand(3, 6), targets=torch.zeros(3, dtype=torch.long)))
    with pytest.raises(ConfigError, match="ReLU MLP"):
        lrp_pruning(nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)), 0.5, ctx)
    with pytest.raises(ConfigError, match="without a ReLU"):
        linear_layers(nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match="calibration"):
        taylor_pruning(_mlp(), 0.5, None)
    with pytest.raises(ConfigError, match="rule"):
        lrp(_mlp(), torch.rand(3, 6, dtype=torch.float64), torch.zeros(3, dtype=torch.long), rule="alpha2beta1")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        unit_magnitude_pruning(_mlp(), 1.2)
