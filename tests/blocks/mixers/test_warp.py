"""WARP (arXiv:2506.01153): the weight-space recurrence theta_t = A theta_{t-1} + B (x_t - x_{t-1}),
decoding by the root network, the convolutional mode = the recurrence, identity A telescopes."""
import pytest
import torch
from torch import nn

from layerlab.blocks.mixers.warp import WARP
from layerlab.errors import ConfigError

from .contract import check_forms_agree, check_step_matches_forward


def make(D=5, hidden=3, perturb=True):
    torch.manual_seed(0)
    b = WARP(D, hidden=hidden, tau_scale=10.0, dtype=torch.float64)
    if perturb:  # a generic A (not the identity of the init)
        with torch.no_grad():
            b.A.add_(0.1 * torch.randn_like(b.A))
    return b


def test_weights_follow_the_recurrence():
    b = make()
    x = torch.randn(2, 9, 5, dtype=torch.float64)
    theta = b.weights(x)
    prev_t, prev_x = b.theta_init.detach().expand(2, -1), torch.zeros(2, 5, dtype=torch.float64)
    for t in range(9):
        want = prev_t @ b.A.detach().T + (x[:, t] - prev_x) @ b.B.detach().T
        assert torch.allclose(theta[:, t], want, rtol=1e-12, atol=1e-12)
        prev_t, prev_x = theta[:, t], x[:, t]


def test_output_is_the_root_network_with_those_weights():
    b = make()
    x = torch.randn(1, 6, 5, dtype=torch.float64)
    theta, y = b.weights(x)[0], b(x)[0]
    for t in range(6):
        W1, b1, W2, b2 = (p.detach() for p in b.unflatten(theta[t]))
        net = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 5)).double()
        with torch.no_grad():
            net[0].weight.copy_(W1); net[0].bias.copy_(b1); net[2].weight.copy_(W2); net[2].bias.copy_(b2)  # noqa: E702
        want = net(torch.tensor([[t / 10.0]], dtype=torch.float64))[0]
        assert torch.allclose(y[t], want, rtol=1e-12, atol=1e-12)


def test_identity_A_telescopes():
    """At init A = I: theta_t = theta_init + B x_t (the input differences sum to x_t)."""
    b = make(perturb=False)
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    want = b.theta_init.detach() + x @ b.B.detach().T
    assert torch.allclose(b.weights(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv_equals_recurrence(dtype):
    b = make().to(dtype)
    for B, L in [(1, 1), (2, 7)]:
        check_forms_agree(b, B, L)
    if dtype == torch.float64:
        check_step_matches_forward(b, 2, 9)


def test_state_is_weights_plus_last_input_and_clock():
    b = make()
    assert b.d_theta == 3 + 3 + 5 * 3 + 5
    assert b.state_size == b.d_theta + 5 + 1


def test_options_are_checked():
    with pytest.raises(ConfigError, match="hidden"):
        WARP(4, hidden=0)
    with pytest.raises(ConfigError, match="tau_scale"):
        WARP(4, tau_scale=0.0)
