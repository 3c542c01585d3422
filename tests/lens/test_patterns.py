"""PatternNet / PatternAttribution (lens.patterns) against the paper's linear example in closed form."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import patterns

F64 = torch.float64


def _uncorrelated(n: int, k: int, seed: int) -> torch.Tensor:
    """(n, k) columns with zero mean, exactly uncorrelated, unit variance."""
    z = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=F64)
    z = z - z.mean(0)
    q, _ = torch.linalg.qr(z)
    return q * math.sqrt(n)


def _linear_example(d: int = 2, sigma_y: float = 1.5, sigma_e: float = 0.7, seed: int = 0):
    """x = a_s y + a_d ε with y, ε uncorrelated; the filter w has w^T a_s = 1, w^T a_d = 0."""
    g = torch.Generator().manual_seed(seed)
    a_s, a_d = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    ye = _uncorrelated(500, 2, seed)
    y, eps = sigma_y * ye[:, 0], sigma_e * ye[:, 1]
    x = y[:, None] * a_s + eps[:, None] * a_d
    w = torch.linalg.pinv(torch.stack([a_s, a_d])) @ torch.tensor([1.0, 0.0], dtype=F64)
    return x, y, w, a_s, a_d, sigma_y, sigma_e


def test_pattern_recovers_the_signal_direction_where_the_weight_does_not():
    for d in (2, 5):
        x, y, w, a_s, a_d, _, _ = _linear_example(d=d, seed=d)
        assert torch.allclose(x @ w, y, atol=1e-12)  # the filter extracts y exactly
        a = patterns.linear_patterns(x, w)[0]
        assert torch.allclose(a, a_s, atol=1e-12)
        cos_w = float(w @ a_s / (w.norm() * a_s.norm()))
        assert abs(cos_w) < 0.99  # the weight points elsewhere: it must cancel a_d
        net = nn.Sequential(nn.Linear(d, 1, bias=False, dtype=F64))
        with torch.no_grad():
            net[0].weight.copy_(w[None])
        assert torch.allclose(patterns.pattern_net(net, x, 0, [a[None]]), y[:, None] * a_s, atol=1e-12)
        assert torch.allclose(patterns.pattern_attribution(net, x, 0, [a[None]]), y[:, None] * (w * a_s), atol=1e-12)


def test_signal_quality_closed_forms():
    x, y, w, a_s, a_d, sy, se = _linear_example(d=2)
    a = patterns.linear_patterns(x, w)
    # in-sample, the linear estimator leaves nothing of y in its distractor estimate: rho = 1
    assert float(patterns.signal_quality(x, w, "linear", a)[0]) == pytest.approx(1.0, abs=1e-12)
    # the filter estimator's distractor is a_d (c y + eps), c = a_d.a_s / |a_d|^2: rho = 1 - |c| sy / sqrt(c² sy² + se²)
    c = float(a_d @ a_s / a_d.square().sum())
    want = 1 - abs(c) * sy / math.sqrt(c * c * sy * sy + se * se)
    assert float(patterns.signal_quality(x, w, "filter")[0]) == pytest.approx(want, abs=1e-10)
    # held out on the same distribution the fitted v still finds the same correlation
    x2, _, _, _, _, _, _ = _linear_example(d=2)
    assert float(patterns.signal_quality(x, w, "filter", x_eval=x2)[0]) == pytest.approx(want, abs=1e-10)


def test_two_component_patterns_recover_each_regime():
    g = torch.Generator().manual_seed(1)
    d = 4
    a_plus, a_minus, a_d = (torch.randn(d, generator=g, dtype=F64) for _ in range(3))
    w = torch.linalg.pinv(torch.stack([a_plus, a_minus, a_d])) @ torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    rows = []
    for sign, a in ((1.0, a_plus), (-1.0, a_minus)):
        y = sign * (0.5 + torch.rand(300, generator=g, dtype=F64))  # one regime each
        eps = torch.randn(300, generator=g, dtype=F64)
        yc, eps = y - y.mean(), eps - eps.mean()
        eps = eps - (eps @ yc) / (yc @ yc) * yc  # uncorrelated with y within the regime
        rows.append(y[:, None] * a + eps[:, None] * a_d)
    x = torch.cat(rows)
    ap, am = patterns.two_component_patterns(x, w)
    assert torch.allclose(ap[0], a_plus, atol=1e-12) and torch.allclose(am[0], a_minus, atol=1e-12)
    # the linear pattern over both regimes is neither
    a = patterns.linear_patterns(x, w)[0]
    assert float((a - a_plus).norm()) > 0.1 and float((a - a_minus).norm()) > 0.1
    est = patterns.signal_estimate(x, w, "two_component", (ap, am))[0]
    assert torch.allclose(est[:300], (x[:300] @ w)[:, None] * a_plus, atol=1e-12)
    # a bias moves the regime boundary: everything "positive" -> a_+ is the linear pattern
    ap_b, _ = patterns.two_component_patterns(x, w, torch.tensor([100.0]))
    assert torch.allclose(ap_b, patterns.linear_patterns(x, w), atol=1e-12)


def test_backward_passes_equal_gradients_when_patterns_are_the_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(11, 5, dtype=F64, requires_grad=True)
    target = torch.randint(0, 3, (11,))
    z = net(x)
    sel = z[torch.arange(11), target]
    (grad,) = torch.autograd.grad(sel.sum(), x)
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    got = patterns.pattern_net(net, x.detach(), target, weights)
    assert torch.allclose(got, grad * sel.detach()[:, None], atol=1e-12)
    ones = [torch.ones_like(w) for w in weights]
    assert torch.allclose(patterns.pattern_attribution(net, x.detach(), target, ones), got, atol=1e-12)
    fitted = patterns.fit_patterns(net, x.detach())
    assert [tuple(a.shape) for a in fitted] == [tuple(w.shape) for w in weights]


def test_errors():
    with pytest.raises(ConfigError, match="nn.Sequential"):
        patterns.fit_patterns(nn.Linear(3, 2), torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="supports nn.Linear and nn.ReLU"):
        patterns.fit_patterns(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), torch.zeros(4, 3))
    with pytest.raises(ShapeError, match="weight must be"):
        patterns.linear_patterns(torch.zeros(4, 3), torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="unknown estimator"):
        patterns.signal_estimate(torch.zeros(4, 3), torch.ones(3), "gradient")
