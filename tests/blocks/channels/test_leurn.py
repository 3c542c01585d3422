"""LEURN (arXiv:2303.14937): the rule layers written out, hard rules at alpha = 1 (responses are the
signs of x + tau, straight-through gradients), the decision splitting exactly into per-rule
contributions, the output constant on the box of the nearest thresholds, the smoothness range,
parameter count and options. The channel contract covers the rest."""
import pytest
import torch

import layerlab
from layerlab.blocks.channels.leurn import LEURN, rule_encoding
from layerlab.errors import ConfigError

F64 = torch.float64


def perturbed(d=5, depth=3, alpha=1.0, seed=0):
    torch.manual_seed(seed)
    m = LEURN(d, depth=depth, alpha=alpha, dtype=F64)
    with torch.no_grad():
        m.tau0.normal_(0, 0.5)
        for p in m.decision.parameters():
            p.normal_()
    return m


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_equals_the_layer_equations(alpha):
    m = perturbed(alpha=alpha)
    x = torch.randn(4, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    enc = lambda u: alpha * torch.sign(u) + (1 - alpha) * torch.tanh(u)  # noqa: E731
    tau, es = m.tau0.expand(4, 5), []
    for d in range(3):
        es.append(enc(x + tau))
        if d < 2:
            tau = torch.cat(es, -1) @ m.thresholds[d].weight.T + m.thresholds[d].bias
    y = torch.cat(es, -1) @ m.decision.weight.T + m.decision.bias
    torch.testing.assert_close(m(x), y, rtol=1e-12, atol=1e-12)


def test_hard_rules_and_straight_through_gradient():
    u = torch.linspace(-3, 3, 13, dtype=F64).requires_grad_()
    e = rule_encoding(u, 1.0)
    assert set(e.tolist()) == {-1.0, 1.0} and torch.equal(e, torch.where(u > 0, 1.0, -1.0).to(F64))
    e.sum().backward()
    torch.testing.assert_close(u.grad, 1 - torch.tanh(u.detach()) ** 2)  # tanh', not 0
    m = perturbed(alpha=1.0)
    x = torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    e, thr = m.encode(x)
    assert torch.equal(e, torch.where(x.unsqueeze(-2) > thr, 1.0, -1.0).to(F64))  # rule: x_i > threshold


def test_contributions_sum_to_the_output():
    for alpha in (0.0, 1.0):
        m = perturbed(alpha=alpha, seed=3)
        x = torch.randn(7, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
        c = m.contributions(x)
        assert c.shape == (7, 5, 3, 5)
        torch.testing.assert_close(c.sum((-1, -2)) + m.decision.bias, m(x), rtol=1e-12, atol=1e-12)


def test_output_is_constant_on_the_box_of_nearest_thresholds():
    m = perturbed(d=4, depth=3, alpha=1.0, seed=5).eval()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, dtype=F64, generator=g)
    lo, hi = m.boundaries(x)
    assert (lo < x).all() and (x < hi).all()
    lo_f = torch.where(torch.isinf(lo), x - 5, lo)
    hi_f = torch.where(torch.isinf(hi), x + 5, hi)
    inside = lo_f + (hi_f - lo_f) * (0.01 + 0.98 * torch.rand(200, 4, dtype=F64, generator=g))
    assert torch.equal(m.encode(inside)[0], m.encode(x)[0].expand(200, -1, -1))  # the same rule responses
    torch.testing.assert_close(m(inside), m(x).expand(200, -1), rtol=1e-13, atol=1e-13)
    finite = torch.isfinite(hi).nonzero().flatten()
    assert len(finite) > 0  # crossing a finite threshold changes some response, and here the output
    i = finite[0]
    beyond = x.clone()
    beyond[i] = hi[i] + 1e-6
    assert not torch.equal(m.encode(beyond)[0], m.encode(x)[0])


def test_smoothness_interpolates_tanh_and_sign():
    u = torch.randn(100, dtype=F64)
    torch.testing.assert_close(rule_encoding(u, 0.0), torch.tanh(u))
    torch.testing.assert_close(rule_encoding(u, 0.25), 0.25 * torch.sign(u) + 0.75 * torch.tanh(u))


def test_parameter_count_init_and_options():
    for d, depth in ((6, 1), (6, 2), (4, 3)):
        m = LEURN(d, depth=depth)
        assert sum(p.numel() for p in m.parameters()) == d + sum((k + 1) * d * d + d for k in range(depth - 1)) \
            + depth * d * d + d
        assert torch.equal(m.tau0, torch.zeros(d))
        assert m.decision.weight.abs().max() <= 1 / (depth * d)
    assert layerlab.build("channel", "leurn", 8).alpha == 0.0
    for kw, match in (({"depth": 0}, "depth"), ({"alpha": 1.5}, "alpha"), ({"alpha": True}, "alpha"),
                      ({"dropout": 1.0}, "dropout")):
        with pytest.raises(ConfigError, match=match):
            LEURN(8, **kw)
