"""SpikeGPT's spiking RWKV time-mixing (SRWKV): RWKV-4 WKV attention, then leaky integrate-and-fire spikes."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import wide_dtype
from .base import Mixer, State

NEG = -1e30  # "minus infinity" for the running max exponent of an empty sum


class SpikeFn(torch.autograd.Function):
    """Heaviside ``Theta(x) = [x >= 0]`` forward; arctan surrogate derivative backward,
    ``d Theta / dx ~ (alpha / 2) / (1 + (pi alpha x / 2)^2)``."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def spike(x: Tensor, alpha: float = 2.0) -> Tensor:
    """Binary spikes ``Theta(x)`` with the arctan surrogate gradient."""
    return SpikeFn.apply(x, alpha)


@register("mixer", "spikegpt", paper=Paper("SpikeGPT: Generative Pre-trained Language Model with Spiking Neural "
                                           "Networks", 2023, "2302.13939"))
class SpikingRWKV(Mixer):
    r"""Spiking RWKV time-mixing: token shift, receptance-weighted WKV, output projection, LIF spikes.

    Paper: Zhu, Zhao, Li, Eshraghian, "SpikeGPT: Generative Pre-trained Language Model with Spiking
    Neural Networks", 2023, arXiv:2302.13939 (the SRWKV block; RWKV-4's WKV: Peng et al., "RWKV:
    Reinventing RNNs for the Transformer Era", 2023, arXiv:2305.13048).

    Equation, per channel (elementwise), inputs ``x_t`` streamed one token at a time::

        r_t = W_r (mu_r x_t + (1 - mu_r) x_{t-1})      (token shift; likewise k_t with mu_k, v_t with mu_v)
        wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
                / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
        y_t = W_o (sigmoid(r_t) * wkv_t)
        U_t = H_{t-1} + beta (y_t - (H_{t-1} - U_reset)),  S_t = Theta(U_t - U_thr),  H_t = U_t (1 - S_t)

    ``w = exp(time_decay) > 0`` (decay) and ``u`` (bonus of the current token) per channel; the
    leaky integrate-and-fire neuron (LIF; ``beta`` the leak, hard reset to 0 after a spike) emits
    binary spikes ``S_t``, the block's output (``spiking=False`` returns ``y_t``: plain RWKV
    time-mixing). ``Theta`` is the Heaviside step forward and an arctan surrogate backward
    (:func:`spike`).

    Shape: ``(B, L, D) -> (B, L, D)``, causal; output entries in {0, 1} when spiking.

    Modes:
        ``"parallel"`` (default): ``wkv = softmax(Z) v`` per channel with
        ``Z[t, i] = k_i - (t-1-i) w`` for ``i < t``, ``u + k_t`` for ``i = t``, ``-inf`` after; the
        LIF then runs over time (an elementwise scan).
        ``"reference"``: token by token (:meth:`step_loop`) with RWKV-4's O(1) state: the running
        numerator ``a``, denominator ``b`` and their common max exponent ``p``, the last input (token
        shift) and the membrane ``H``.

    Initialization (RWKV-4's for a first layer, channel ``h`` of ``H = D``, ``f = h / (H - 1)``):
    ``time_decay_h = -5 + 8 f^0.7``; ``u_h = log(0.3) + 0.5 ((h + 1) mod 3 - 1)``;
    ``mu_k = mu_r = (h / H)^0.5``, ``mu_v = mu_k + 0.15`` (clamped to 1); ``W_r, W_k, W_v, W_o``
    normal with std ``D^(-1/2)``. LIF: ``beta = 0.5``, ``U_thr = 0.1``, ``U_reset = 0``: with these
    weights ``y_t`` has std ~0.3 and about 20-25% of the units fire at init on unit-normal inputs
    (a threshold of 1 leaves them silent: < 0.1%).

    Options: ``spiking`` (default True), ``beta``, ``threshold``, ``surrogate_alpha`` (2.0),
    ``device``, ``dtype``.

    Deviations: no channel-mixing (SRFFN) sub-block here (the backbone's channel mixer takes that
    place); the arctan surrogate is one common choice; the WKV runs in float32 or wider.
    """

    modes = ("parallel", "reference")
    recurrent = True
    no_weight_decay = ("time_decay", "time_first", "mu_r", "mu_k", "mu_v")

    def __init__(self, d_model: int, *, spiking: bool = True, beta: float = 0.5, threshold: float = 0.1,
                 surrogate_alpha: float = 2.0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(d_model)
        if not 0.0 < beta <= 1.0:
            raise ConfigError(f"spikegpt: beta (the LIF leak) must be in (0, 1], got {beta}")
        if not threshold > 0:
            raise ConfigError(f"spikegpt: threshold must be > 0, got {threshold}")
        if not surrogate_alpha > 0:
            raise ConfigError(f"spikegpt: surrogate_alpha must be > 0, got {surrogate_alpha}")
        factory = {"device": device, "dtype": dtype}
        D = d_model
        self.spiking, self.beta, self.threshold, self.alpha = bool(spiking), float(beta), float(threshold), float(surrogate_alpha)
        self.time_decay = nn.Parameter(torch.empty(D, **factory))
        self.time_first = nn.Parameter(torch.empty(D, **factory))
        self.mu_r, self.mu_k, self.mu_v = (nn.Parameter(torch.empty(D, **factory)) for _ in range(3))
        self.w_r, self.w_k, self.w_v, self.w_o = (nn.Linear(D, D, bias=False, **factory) for _ in range(4))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        D = self.d_model
        h = torch.arange(D, dtype=torch.float64)
        f = h / max(D - 1, 1)
        with torch.no_grad():
            self.time_decay.copy_(-5 + 8 * f ** 0.7)
            self.time_first.copy_(math.log(0.3) + 0.5 * ((h + 1) % 3 - 1))
            mix = (h / D) ** 0.5
            self.mu_r.copy_(mix)
            self.mu_k.copy_(mix)
            self.mu_v.copy_((mix + 0.15).clamp(max=1.0))
            for lin in (self.w_r, self.w_k, self.w_v, self.w_o):
                nn.init.normal_(lin.weight, std=D ** -0.5)

    def _rkv(self, x: Tensor, x_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mix = lambda mu: mu * x + (1 - mu) * x_prev  # noqa: E731
        return self.w_r(mix(self.mu_r)), self.w_k(mix(self.mu_k)), self.w_v(mix(self.mu_v))

    def _lif(self, y: Tensor, H: Tensor) -> tuple[Tensor, Tensor]:
        """One LIF step: ``(S_t, H_t)`` from ``y_t`` and ``H_{t-1}`` (U_reset = 0)."""
        U = H + self.beta * (y - H)
        S = spike(U - self.threshold, self.alpha)
        return S, U * (1 - S)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        B, L, D = x.shape
        real = wide_dtype(x.dtype)
        x_prev = torch.cat([x.new_zeros(B, 1, D), x[:, :-1]], dim=1)
        r, k, v = (t.to(real) for t in self._rkv(x, x_prev))
        w, u = torch.exp(self.time_decay.to(real)), self.time_first.to(real)
        t = torch.arange(L, device=x.device)
        lag = (t[:, None] - 1 - t[None, :]).to(real)  # t - 1 - i
        kk = k.transpose(1, 2)  # (B, D, L)
        Z = kk[:, :, None, :] - lag * w[None, :, None, None]  # (B, D, L_t, L_i)
        Z = torch.where(t[:, None] == t[None, :], (u[:, None] + kk)[:, :, None, :].expand_as(Z), Z)
        Z = Z.masked_fill(t[None, :] > t[:, None], float("-inf"))
        wkv = (torch.softmax(Z, dim=-1) @ v.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        y = self.w_o((torch.sigmoid(r) * wkv).to(self.w_o.weight.dtype)).to(real)
        if not self.spiking:
            return y.to(x.dtype)
        H, out = y.new_zeros(B, D), []
        for i in range(L):
            S, H = self._lif(y[:, i], H)
            out.append(S)
        return torch.stack(out, dim=1).to(x.dtype)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        real = wide_dtype(f["dtype"])
        z = lambda: torch.zeros(batch_size, self.d_model, device=f["device"], dtype=real)  # noqa: E731
        return (z(), z(), z(), torch.full((batch_size, self.d_model), NEG, device=f["device"], dtype=real), z())

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        x_prev, a, b, p, H = state
        real = a.dtype
        r, k, v = (t.to(real) for t in self._rkv(x_t, x_prev.to(x_t.dtype)))
        w, u = torch.exp(self.time_decay.to(real)), self.time_first.to(real)
        # output: the sums so far plus the current token with its bonus u
        q = torch.maximum(p, u + k)
        e1, e2 = torch.exp(p - q), torch.exp(u + k - q)
        wkv = (e1 * a + e2 * v) / (e1 * b + e2)
        # state: decay the sums by e^{-w}, add the current token without the bonus
        q2 = torch.maximum(p - w, k)
        e1, e2 = torch.exp(p - w - q2), torch.exp(k - q2)
        a, b, p = e1 * a + e2 * v, e1 * b + e2, q2
        y = self.w_o((torch.sigmoid(r) * wkv).to(self.w_o.weight.dtype)).to(real)
        if self.spiking:
            y, H = self._lif(y, H)
        return y.to(x_t.dtype), (x_t.to(real), a, b, p, H)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, spiking={self.spiking}, beta={self.beta}, threshold={self.threshold}, "
                f"modes={self.modes}")
