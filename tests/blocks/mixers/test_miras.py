"""Miras (Behrouz et al. 2025): its l2 member is the registered DeltaNet (same weights, float64
1e-10, every mode); the l2-retention member differs from Gated DeltaNet by exactly
(1 - alpha) beta k k^T W; each attentional bias's step is the gradient of its objective
(autograd); the lq retention normalizes, the KL retention keeps columns on the simplex; the
Huber step is the l2 step for small errors and bounded for large ones; contract per member."""
import pytest
import torch

import layerlab
from layerlab.blocks.mixers.miras import BIASES, RETENTIONS, Miras
from layerlab.errors import ConfigError

from .contract import check_causal, check_forms_agree, check_state_size, check_step_matches_forward, rel_err

F64 = torch.float64


@pytest.mark.parametrize("bias,p", [("l2", 3.0), ("lp", 2.0)])
def test_l2_member_is_deltanet_on_the_same_weights(bias, p):
    torch.manual_seed(0)
    delta = layerlab.build("mixer", "deltanet", 8, n_heads=2, chunk_size=4, dtype=F64)
    miras = Miras(8, bias=bias, p=p, retention="none", n_heads=2, chunk_size=4, dtype=F64)
    assert set(miras.state_dict()) == set(delta.state_dict())  # DeltaNet's parameters, nothing more
    miras.load_state_dict(delta.state_dict())
    x = torch.randn(2, 13, 8, dtype=F64)
    y = delta(x, mode="reference")
    assert miras.modes == ("fused", "chunk", "reference")
    for mode in miras.modes:
        assert rel_err(miras(x, mode=mode), y) <= 1e-10
    # the reference here is Miras's own update loop, not DeltaNet's kernel
    assert rel_err(miras.step_loop(x), y) <= 1e-10


def test_l2_retention_differs_from_gated_deltanet_by_the_decayed_gradient():
    """Miras: alpha W - beta k (W^T k - v)^T; Gated DeltaNet: alpha (I - beta k k^T) W + beta k v^T.
    The difference is -(1 - alpha) beta k k^T W, checked on one step from a random state."""
    torch.manual_seed(1)
    m = Miras(8, bias="l2", retention="l2", n_heads=2, dtype=F64)
    W = torch.randn(3, 2, 4, 4, dtype=F64)
    k = torch.nn.functional.normalize(torch.randn(3, 2, 4, dtype=F64), dim=-1)
    v, eta = torch.randn(3, 2, 4, dtype=F64), torch.rand(3, 2, dtype=F64)
    g = -torch.rand(3, 2, dtype=F64)
    a, b = torch.exp(g)[..., None, None], eta[..., None, None]
    kkT = k.unsqueeze(-1) * k.unsqueeze(-2)
    gated_deltanet = a * (W - b * kkT @ W) + b * k.unsqueeze(-1) * v.unsqueeze(-2)
    miras = m.update(W, k, v, eta, g, torch.zeros(3, 8, dtype=F64))
    assert rel_err(miras - gated_deltanet, -(1 - a) * b * kkT @ W) <= 1e-12
    assert (miras - gated_deltanet).abs().max() > 1e-3  # they really differ


@pytest.mark.parametrize("bias", ["l2", "lp", "dot"])
def test_each_step_is_the_gradient_of_its_attentional_bias(bias):
    """eta k psi(e)^T equals eta * d l / d W by autograd, for l = 1/2|e|^2, (1/p) sum (e^2+eps)^{p/2}
    (the smoothed lp objective), and -<W^T k, v>."""
    torch.manual_seed(2)
    m = Miras(8, bias=bias, p=3.0, retention="none", n_heads=2, dtype=F64)
    W = torch.randn(3, 2, 4, 4, dtype=F64, requires_grad=True)
    k = torch.nn.functional.normalize(torch.randn(3, 2, 4, dtype=F64), dim=-1)
    v, eta = torch.randn(3, 2, 4, dtype=F64), torch.rand(3, 2, dtype=F64)
    pred = (k.unsqueeze(-1) * W).sum(-2)
    e = pred - v
    loss = {"l2": 0.5 * e.square().sum(),
            "lp": ((e.square() + 1e-6) ** 1.5).sum() / 3.0,
            "dot": -(pred * v).sum()}[bias]
    (grad,) = torch.autograd.grad(loss, W)
    step = W.detach() - m.update(W.detach(), k, v, eta, None, torch.zeros(3, 8, dtype=F64))
    assert rel_err(step, eta[..., None, None] * grad) <= 1e-12


def test_huber_step_is_l2_for_small_errors_and_bounded_for_large_ones():
    torch.manual_seed(3)
    m = Miras(8, bias="huber", retention="none", n_heads=2, dtype=F64)
    x = torch.zeros(3, 8, dtype=F64)
    delta = torch.nn.functional.softplus(m.delta_proj.bias)[0].item()  # x = 0: delta = softplus(b) = sqrt(d)
    assert abs(delta - 2.0) < 1e-12  # d = 8 / 2 heads = 4
    e_small = torch.randn(3, 2, 4, dtype=F64)
    e_small = 1.5 * e_small / e_small.norm(dim=-1, keepdim=True)  # |e| = 1.5 < delta
    assert torch.equal(m.psi(e_small, x, None), e_small)
    e_big = 100 * torch.randn(3, 2, 4, dtype=F64)  # an outlier: the step is delta sign(e), not e
    psi = m.psi(e_big, x, None)
    assert psi.abs().max() <= 2.0 + 1e-12
    assert torch.allclose(psi, 2.0 * torch.sign(e_big), atol=1e-6)


def test_lq_retention_normalizes_and_kl_stays_on_the_simplex():
    torch.manual_seed(4)
    x = torch.randn(2, 40, 8, dtype=F64) * 3
    m = Miras(8, bias="lp", retention="lq", q=4.0, n_heads=2, dtype=F64)
    A = torch.randn(2, 2, 4, 4, dtype=F64)
    W = m.memory(A)
    # W = A / |A|_4^2, so |W|_4 = |A|_4^{-1}: the normalization inverts the scale of A
    n4 = lambda t: t.abs().pow(4).sum((-2, -1)).pow(0.25)  # noqa: E731
    assert rel_err(n4(W), 1 / n4(A)) <= 1e-12
    assert rel_err(m.memory(5 * A), m.memory(A) / 5) <= 1e-12

    m = Miras(8, bias="l2", retention="kl", kl_mass=2.0, n_heads=2, dtype=F64)
    state = m.init_state(2)
    for t in range(x.shape[1]):
        _, state = m.step(x[:, t], state)
        assert state[0].min() > 0
        assert torch.allclose(state[0].sum(-2), torch.full((2, 2, 4), 2.0, dtype=F64), atol=1e-12)


@pytest.mark.parametrize("retention", RETENTIONS)
@pytest.mark.parametrize("bias", BIASES)
def test_contract_for_every_member(bias, retention):
    torch.manual_seed(5)
    block = Miras(8, bias=bias, retention=retention, n_heads=2, chunk_size=4, dtype=F64)
    check_forms_agree(block, 2, 7)
    check_step_matches_forward(block, 2, 9)
    check_causal(block, L=7)
    check_state_size(block)
    if not (bias == "lp" and retention in ("none", "l2")):  # those diverge: see below
        assert torch.isfinite(block(torch.randn(2, 30, 8, dtype=F64) * 5)).all()


def test_lp_steps_need_the_lq_normalization():
    """With p = 3 a gradient step scales the error by (1 - eta |e|): errors beyond 2 / eta grow
    and the memory diverges under the plain or l2 retention; Moneta's lq retention divides by
    |A|_q^{q-2} and stays finite on the same weights and inputs."""
    torch.manual_seed(7)
    x = torch.randn(2, 60, 8, dtype=F64) * 5
    plain = Miras(8, bias="lp", retention="l2", n_heads=2, dtype=F64)
    moneta = Miras(8, bias="lp", retention="lq", n_heads=2, dtype=F64)
    moneta.load_state_dict(plain.state_dict())
    state = plain.init_state(2)
    norms = []
    for t in range(x.shape[1]):
        _, state = plain.step(x[:, t], state)
        norms.append(state[0].abs().max().item())
    assert not (max(norms) < 1e6)  # blew up (or overflowed to inf / nan)
    assert torch.isfinite(moneta(x)).all()


def test_named_members_build_and_gradcheck():
    for opts in ({"bias": "lp", "p": 3.0, "retention": "lq", "q": 4.0},   # Moneta
                 {"bias": "huber", "retention": "l2"},                      # Yaad
                 {"bias": "l2", "retention": "kl"}):                        # Memora
        torch.manual_seed(6)
        block = layerlab.build("mixer", "miras", 4, n_heads=2, conv_size=2, dtype=F64, **opts)
        x = torch.randn(1, 4, 4, dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: block(x), (x,)), opts


def test_strict_options():
    with pytest.raises(ConfigError, match="attentional bias"):
        Miras(8, bias="l3")
    with pytest.raises(ConfigError, match="retention must be one of"):
        Miras(8, retention="elastic")
    with pytest.raises(ConfigError, match="q .* must be > 2"):
        Miras(8, retention="lq", q=2.0)
    with pytest.raises(ConfigError, match="p .* must be >= 1"):
        Miras(8, bias="lp", p=0.5)
    with pytest.raises(ConfigError, match="kl_mass"):
        Miras(8, retention="kl", kl_mass=0.0)
