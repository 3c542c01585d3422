"""WARP: a weight-space linear RNN whose hidden state is the flattened weights of a small root network."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import wide_dtype
from .base import Mixer, State


@register("mixer", "warp", paper=Paper("Weight-Space Linear Recurrent Neural Networks", 2025, "2506.01153"))
class WARP(Mixer):
    r"""WARP (Weight-space Adaptive Recurrent Prediction): linear recurrence on root-network weights.

    Paper: Nzoyem, Keshtmand, Tsayem, Barton, Deakin, "Weight-Space Linear Recurrent Neural
    Networks", 2025, arXiv:2506.01153.

    Equation, per sequence, ``theta_t in R^{D_theta}`` the flattened weights and biases of the root
    network ``theta(.)`` (an MLP ``1 -> hidden -> D`` with tanh)::

        theta_t = A theta_{t-1} + B (x_t - x_{t-1})            (A: D_theta x D_theta, B: D_theta x D)
        y_t = theta_t(tau_t)                                    (the root network at the query tau_t)

    with ``x_{-1} = 0`` and ``theta_{-1} = theta_init`` (a learned vector). The root network reads
    ``tau_t = t / tau_scale`` (the paper's normalized time ``t / (T - 1)``, with a fixed scale so
    the block stays causal and streamable).

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"conv"`` (default): the paper's convolutional mode: ``theta_t = A^{t+1} theta_init +
        sum_{i<=t} A^{t-i} B (x_i - x_{i-1})`` with the kernels ``A^j B`` computed once, then every
        ``theta_t`` decoded in parallel.
        ``"reference"``: the recurrence token by token (:meth:`step_loop`).

    Initialization: ``A = I`` (each weight starts as an integrator of input differences, so
    ``theta_t = theta_init + B x_t`` at init); ``B ~ N(0, 0.1^2 / D)``; ``theta_init`` the root
    network's own init (weights U(+-1/sqrt(fan_in)), as PyTorch's Linear; biases 0).

    Options: ``hidden`` (root network width, default 8), ``tau_scale`` (default 64), ``device``,
    ``dtype``.

    Deviations: ``theta_{-1}`` is a learned vector rather than a hypernetwork of ``x_0``; the root
    network's query is ``t / tau_scale`` (not ``t / (T - 1)``, which needs the length in advance);
    no low-rank ``A``.
    """

    modes = ("conv", "reference")
    recurrent = True

    def __init__(self, d_model: int, *, hidden: int = 8, tau_scale: float = 64.0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(d_model)
        if int(hidden) < 1:
            raise ConfigError(f"warp: hidden (the root network width) must be >= 1, got {hidden}")
        if not tau_scale > 0:
            raise ConfigError(f"warp: tau_scale must be > 0, got {tau_scale}")
        factory = {"device": device, "dtype": dtype}
        D, h = d_model, int(hidden)
        self.hidden, self.tau_scale = h, float(tau_scale)
        self.d_theta = h + h + D * h + D  # W1 (h, 1), b1 (h), W2 (D, h), b2 (D)
        self.A = nn.Parameter(torch.empty(self.d_theta, self.d_theta, **factory))
        self.B = nn.Parameter(torch.empty(self.d_theta, D, **factory))
        self.theta_init = nn.Parameter(torch.empty(self.d_theta, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        D, h = self.d_model, self.hidden
        with torch.no_grad():
            self.A.copy_(torch.eye(self.d_theta))
            nn.init.normal_(self.B, std=0.1 / math.sqrt(D))
            W1 = torch.empty(h, 1).uniform_(-1.0, 1.0)
            W2 = torch.empty(D, h).uniform_(-h ** -0.5, h ** -0.5)
            self.theta_init.copy_(torch.cat([W1.flatten(), torch.zeros(h), W2.flatten(), torch.zeros(D)]))

    def unflatten(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``theta (..., D_theta)`` -> ``W1 (..., h, 1), b1 (..., h), W2 (..., D, h), b2 (..., D)``."""
        D, h = self.d_model, self.hidden
        W1, b1, W2, b2 = theta.split([h, h, D * h, D], dim=-1)
        return W1.unflatten(-1, (h, 1)), b1, W2.unflatten(-1, (D, h)), b2

    def root(self, theta: Tensor, tau: Tensor) -> Tensor:
        """The root network with weights ``theta (..., D_theta)`` at the query ``tau (...)``: (..., D)."""
        W1, b1, W2, b2 = self.unflatten(theta)
        z = torch.tanh(W1.squeeze(-1) * tau.unsqueeze(-1) + b1)
        return (W2 @ z.unsqueeze(-1)).squeeze(-1) + b2

    def weights(self, x: Tensor) -> Tensor:
        """``theta_t`` for every position (convolutional mode): (B, L, D_theta), float32 or wider."""
        B, L, D = x.shape
        real = wide_dtype(x.dtype)
        A, Bm, th0 = self.A.to(real), self.B.to(real), self.theta_init.to(real)
        dx = torch.diff(x.to(real), dim=1, prepend=torch.zeros(B, 1, D, dtype=real, device=x.device))
        K, P = [], Bm  # K[j] = A^j B
        for _ in range(L):
            K.append(P)
            P = A @ P
        free, powers = [], th0  # A^{t+1} theta_init
        for _ in range(L):
            powers = A @ powers
            free.append(powers)
        theta = torch.stack(free).expand(B, L, self.d_theta)
        for j in range(L):  # lag j: theta_t += A^j B dx_{t-j}
            theta = theta + torch.nn.functional.pad(dx[:, : L - j] @ K[j].T, (0, 0, j, 0))
        return theta

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        theta = self.weights(x)
        tau = torch.arange(x.shape[1], device=x.device, dtype=theta.dtype) / self.tau_scale
        return self.root(theta, tau.expand(x.shape[0], -1)).to(x.dtype)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        real = wide_dtype(f["dtype"])
        theta = self.theta_init.detach().to(device=f["device"], dtype=real).expand(batch_size, -1).clone()
        return (theta, torch.zeros(batch_size, self.d_model, device=f["device"], dtype=real),
                torch.zeros(batch_size, device=f["device"], dtype=real))

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        theta, x_prev, t = state
        real = theta.dtype
        if bool((t == 0).all()):  # theta_{-1} = theta_init, with its gradient
            theta = self.theta_init.to(real).expand_as(theta)
        x = x_t.to(real)
        theta = theta @ self.A.to(real).T + (x - x_prev) @ self.B.to(real).T
        y = self.root(theta, t / self.tau_scale)
        return y.to(x_t.dtype), (theta, x, t + 1)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, hidden={self.hidden}, d_theta={self.d_theta}, modes={self.modes}"
