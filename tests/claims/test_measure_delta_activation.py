"""Measure delta_activation_digits_video: the counts at threshold 0 equal the nonzero changes counted
directly, fractions fall with the threshold, the AR(1) clips have the stated noise statistics."""
import math

import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.delta_activation import DeltaMLP, _evaluate, clips


def test_clip_noise_is_ar1_with_stationary_std():
    x = torch.zeros(20000, 4)
    c = clips(x, 3, 0.9, 0.1, torch.Generator().manual_seed(0))
    assert abs(float(c[:, 2].std()) - 0.1) < 0.003  # stationary std (4 SE ~ 0.0014 per column set)
    corr = float((c[:, 1] * c[:, 2]).mean() / (c[:, 1].std() * c[:, 2].std()))
    assert abs(corr - 0.9) < 0.01


def test_fraction_at_threshold_zero_is_the_nonzero_change_count():
    torch.manual_seed(0)
    net = DeltaMLP(6, 5, 3)
    x = clips(torch.rand(7, 6), 4, 0.5, 0.2, torch.Generator().manual_seed(1))
    x[:, 2] = x[:, 1]  # a repeated frame sends nothing at any threshold
    acc, frac_hidden, _ = _evaluate(net, x, torch.zeros(7, dtype=torch.long), 0.0)
    with torch.no_grad():
        net(x)
    sent = total = 0
    for h in net.hidden:
        prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
        sent += int((h != prev).sum())
        total += h.numel()
    assert math.isclose(frac_hidden, sent / total, rel_tol=0, abs_tol=1e-12)


def test_measure_runs_and_reports_a_consistent_ratio():
    out = get_measure("delta_activation_digits_video")(0, width=8, frames=3, steps=3, lams=[1.0],
                                                        thresholds=[0.0, 0.1], card_threshold=0.1)
    assert out["frac_plain_t0"] >= out["frac_plain_t0.1"] and out["frac_pen_t0"] >= out["frac_pen_t0.1"]
    assert math.isclose(out["update_ratio"], out["frac_pen_t0.1"] / out["frac_plain_t0.1"], rel_tol=1e-12)
    assert math.isclose(out["acc_drop"], out["acc_plain_t0.1"] - out["acc_pen_t0.1"], abs_tol=1e-12)
