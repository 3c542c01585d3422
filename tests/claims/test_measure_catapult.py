"""The catapult measurement and the neural quadratic model (Zhu et al. 2022, arXiv:2205.11787)."""
from __future__ import annotations

import pytest
import torch

from layerlab.claims.measures import get_measure
from layerlab.claims.measures.catapult import kernel_top, run_gd
from layerlab.errors import ConfigError
from layerlab.lens.theory import TwoLayerReLU
from layerlab.lens.theory.quadratic import QuadraticReLU, second_order_taylor

DT = torch.float64


@pytest.mark.parametrize("bias", [False, True])
def test_quadratic_relu_equals_the_second_order_taylor_expansion(bias):
    g = torch.Generator().manual_seed(0)
    net = TwoLayerReLU(3, 16, g, bias=bias, dtype=DT)
    nqm = QuadraticReLU(net)
    x = torch.randn(7, 3, generator=g, dtype=DT)
    assert torch.allclose(nqm(x), net(x), rtol=1e-12)  # equal at initialization
    theta0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        for p in nqm.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=DT))
    theta = {k: v.detach() for k, v in nqm.named_parameters()}
    ref = second_order_taylor(net, theta0, theta, x)
    assert torch.allclose(nqm(x), ref, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(net(x), ref)  # the expansion differs from the moved network...
    with torch.no_grad():
        net.load_state_dict(theta, strict=False)
    assert not torch.allclose(net(x), nqm(x))  # ...and is not the network at the new parameters


def test_kernel_top_is_the_top_eigenvalue_of_j_jt_over_n():
    g = torch.Generator().manual_seed(1)
    net = TwoLayerReLU(3, 32, g, dtype=DT)
    x = torch.randn(5, 3, generator=g, dtype=DT)
    J = torch.cat([torch.autograd.functional.jacobian(lambda w: net.a @ torch.relu(x @ w.T).T / 32 ** 0.5, net.w.detach())
                   .reshape(5, -1),
                   torch.autograd.functional.jacobian(lambda a: a @ torch.relu(x @ net.w.detach().T).T / 32 ** 0.5,
                                                      net.a.detach())], 1)
    top = float(torch.linalg.eigvalsh(J @ J.T / 5)[-1])
    assert kernel_top(net, (x, torch.zeros(5, 1, dtype=DT)), torch.Generator().manual_seed(0)) == pytest.approx(top, rel=1e-8)


def test_gd_on_a_linear_model_follows_the_linear_thresholds():
    # a linear model (R = 0): below 2/lambda it converges monotonically, above it diverges
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, generator=g, dtype=DT)
    y = torch.ones(1, 1, dtype=DT)
    lam = float(x.square().sum())  # J J^T / n for f = w.x, one example
    for factor, outcome in ((0.9, 1.0), (1.1, -1.0)):
        model = torch.nn.Linear(4, 1, bias=False).to(DT)
        with torch.no_grad():
            model.weight.zero_()
        res = run_gd(model, (x, y), factor * 2 / lam, 5000, 1e-8, 1e8)
        assert res["outcome"] == outcome
        assert res["spike"] == pytest.approx(1.0) if outcome == 1.0 else res["spike"] > 1


def test_measurement_on_a_small_quadratic_model_and_bad_options():
    m = get_measure("catapult")
    out = m(0, width=256, factors=[0.5, 1.5, 2.5], max_steps=2000)
    assert out["spike.0.5"] <= 1.0 and out["outcome.0.5"] == 1.0
    assert out["spike.1.5"] > 1.0 and out["outcome.1.5"] == 1.0 and out["edge_final.1.5"] < 1.0
    assert out["outcome.2.5"] == -1.0
    assert out["violations"] == 0.0
    with pytest.raises(ConfigError, match="factors"):
        m(0, factors=[2.0])
    with pytest.raises(ConfigError, match="model"):
        m(0, model="linear")
