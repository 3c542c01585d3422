"""Certified margin bounds (lens.certify, arXiv:2211.17244): interval <= LP <= exact, SDP <= exact,
the MILP against enumeration of activation patterns, closed forms where the network is affine."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.errors import ConfigError, ShapeError
from layerlab.lens import certify


def mlp(sizes: list[int], seed: int, bias_std: float = 0.3) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(n, m, generator=g, dtype=torch.float64) * (2 / m) ** 0.5 for m, n in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(n, generator=g, dtype=torch.float64) * bias_std for n in sizes[1:]]
    return ws, bs


def centre(seed: int, n: int = 3) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 4])
def test_milp_equals_enumeration_of_activation_patterns_and_bounds_dense_sampling(seed):
    ws, bs = mlp([3, 4, 4, 3], seed)
    x0, eps = centre(seed), 0.5
    enum = certify.enumerate_margin(ws, bs, x0, eps, label=0, target=1)  # 256 LPs, no bounds used
    for method in ("interval", "lp"):
        prob = certify.problem(ws, bs, x0, eps, certify.preactivation_bounds(ws, bs, x0, eps, method), label=0, target=1)
        exact, x_star = certify.exact_margin(prob, return_x=True)
        assert exact == pytest.approx(enum, abs=1e-7)
        # attained: the MILP's minimizer lies in the ball and the network's margin there is d*
        assert float((x_star - x0).abs().max()) <= eps + 1e-9
        assert float(certify.margin(ws, bs, x_star[None], label=0, target=1)[0]) == pytest.approx(exact, abs=1e-7)
    # and no point of the ball (corners and uniform points) has a smaller margin
    g = torch.Generator().manual_seed(seed)
    pts = x0 + eps * torch.cat([torch.randint(0, 2, (4000, 3), generator=g) * 2.0 - 1,
                                torch.rand(4000, 3, generator=g, dtype=torch.float64) * 2 - 1])
    assert enum <= float(certify.margin(ws, bs, pts, label=0, target=1).min()) + 1e-9


@pytest.mark.parametrize("seed", [0, 7])
def test_every_bound_is_below_the_exact_minimum_and_ordered(seed):
    ws, bs = mlp([3, 4, 4, 3], seed)
    x0, eps = centre(seed), 0.5
    for method in ("interval", "lp"):
        prob = certify.problem(ws, bs, x0, eps, certify.preactivation_bounds(ws, bs, x0, eps, method), label=0, target=1)
        exact = certify.exact_margin(prob)
        box, lp = certify.interval_bound(prob), certify.lp_bound(prob)
        sdp, cut = certify.sdp_bound(prob), certify.sdp_bound(prob, cuts=True)
        tol = 1e-7
        assert box <= lp + tol and lp <= exact + tol
        assert sdp.bound <= exact + tol and cut.bound <= exact + tol
        # with the triangle inequalities in its first row the SDP is at least the LP (up to the solver)
        assert cut.bound >= lp - 1e-4
        # the primal BM value is an upper estimate of the SDP value: the certificate is below it
        assert sdp.bound <= sdp.primal + 1e-6 and sdp.violation < 1e-4


def test_paper_sdp_and_lp_are_not_comparable_but_sdp_closes_the_gap_elsewhere():
    # seed 0 with LP bounds: the SDP without the triangle cuts is below the LP (the paper does not claim SDP >= LP)
    ws, bs = mlp([3, 4, 4, 3], 0)
    prob = certify.problem(ws, bs, centre(0), 0.5, certify.lp_preactivation_bounds(ws, bs, centre(0), 0.5), label=0, target=1)
    sdp, lp = certify.sdp_bound(prob), certify.lp_bound(prob)
    assert sdp.primal < lp - 5e-3  # a (nearly) feasible SDP point below the LP optimum: not a solver artefact
    # seed 7: the LP is loose and the SDP is exact (its certificate equals the MILP to 1e-5)
    ws, bs = mlp([3, 4, 4, 3], 7)
    prob = certify.problem(ws, bs, centre(7), 0.5, certify.preactivation_bounds(ws, bs, centre(7), 0.5, "interval"),
                           label=0, target=1)
    exact, lp, sdp = certify.exact_margin(prob), certify.lp_bound(prob), certify.sdp_bound(prob)
    assert exact - lp > 0.05 and abs(sdp.bound - exact) < 1e-5 and sdp.eig_min > -1e-6


def test_affine_network_every_method_gives_the_closed_form():
    # biases large enough that no unit switches on the ball: f is affine there, min = c^T f(x0) - eps ||grad||_1
    ws, bs = mlp([4, 5, 3], seed=1)
    bs[0] = bs[0].abs() + 10.0
    x0, eps = centre(1, 4), 0.3
    J = ws[1] @ ws[0]
    c = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    closed = float(certify.margin(ws, bs, x0[None], c=c)[0] - eps * (c @ J).abs().sum())
    prob = certify.problem(ws, bs, x0, eps, certify.preactivation_bounds(ws, bs, x0, eps, "interval"), c=c)
    assert prob.n_unstable == 0
    assert certify.interval_bound(prob) == pytest.approx(closed, abs=1e-12)
    assert certify.lp_bound(prob) == pytest.approx(closed, abs=1e-9)
    assert certify.exact_margin(prob) == pytest.approx(closed, abs=1e-9)
    assert certify.sdp_bound(prob).bound == pytest.approx(closed, abs=1e-6)


def test_certify_and_model_certify_agree_and_are_side_effect_free():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    before = [p.detach().clone() for p in net.parameters()]
    state = torch.random.get_rng_state()
    x = torch.tensor([0.1, -0.2, 0.3])
    out = certify.model_certify(net, x, 0, 0.2, targets=[1, 2], bounds="interval")
    assert set(out) == {1, 2}
    for row in out.values():
        assert row["interval"] <= row["lp"] + 1e-9 <= row["exact"] + 2e-9 and row["sdp"] <= row["exact"] + 1e-7
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())


def test_bad_inputs_are_clear_errors():
    ws, bs = mlp([3, 4, 3], 0)
    with pytest.raises(ConfigError, match="eps"):
        certify.preactivation_bounds(ws, bs, torch.zeros(3), -1.0, "lp")
    with pytest.raises(ConfigError, match="unknown bounds method"):
        certify.preactivation_bounds(ws, bs, torch.zeros(3), 0.1, "zonotope")
    with pytest.raises(ShapeError, match="center has 2 features"):
        certify.lp_preactivation_bounds(ws, bs, torch.zeros(2), 0.1)
    with pytest.raises(ConfigError, match="different target"):
        certify.problem(ws, bs, torch.zeros(3), 0.1, certify.preactivation_bounds(ws, bs, torch.zeros(3), 0.1, "interval"),
                        label=1, target=1)
    with pytest.raises(ConfigError, match="unknown certification method"):
        certify.certify(ws, bs, torch.zeros(3), 0, 0.1, methods=("pgd",))
    with pytest.raises(ConfigError, match="at most 14"):
        certify.enumerate_margin(*mlp([3, 10, 10, 3], 0), torch.zeros(3), 0.1, label=0, target=1)
    assert np.isfinite(certify.sdp_bound(certify.problem(ws, bs, torch.zeros(3), 0.1, certify.preactivation_bounds(
        ws, bs, torch.zeros(3), 0.1, "interval"), label=0, target=2)).bound)
