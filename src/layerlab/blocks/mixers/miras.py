"""The Miras family: associative memories written by one online-optimization step per token on
an attentional bias (l2, lp, Huber, dot product) with a retention gate (none, l2, lq, KL)
("It's All Connected: A Journey Through Test-Time Memorization, Attentional Bias, Retention, and
Online Optimization", Behrouz, Razaviyayn, Zhong & Mirrokni)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ...errors import ConfigError
from ...registry import Paper, register
from .base import State
from .delta import _DeltaMixer

BIASES = ("l2", "lp", "huber", "dot")
RETENTIONS = ("none", "l2", "lq", "kl")
SMOOTH_EPS = 1e-6  # |x| ~ sqrt(x^2 + eps), the paper's smooth absolute value (Remark on Eq. 11)


@register("mixer", "miras",
          paper=Paper("It's All Connected: A Journey Through Test-Time Memorization, Attentional Bias, "
                      "Retention, and Online Optimization", 2025, "2504.13173"))
class Miras(_DeltaMixer):
    r"""Miras: a matrix memory per head learns the map ``k -> v`` at test time by one gradient step
    per token on an attentional bias, under a retention gate; DeltaNet is its l2 member.

    Paper: Behrouz, Razaviyayn, Zhong & Mirrokni, "It's All Connected: A Journey Through
    Test-Time Memorization, Attentional Bias, Retention, and Online Optimization", 2025,
    arXiv:2504.13173 (Secs. 3-5: attentional biases Eqs. 10-16, retention gates Eqs. 18-24,
    Moneta / Yaad / Memora Eqs. 24-27).

    Equation, per head, memory ``W`` in R^{d x d} read as ``M(k) = W^T k`` (this module's
    convention, as ``deltanet``: ``W = S^T``), error ``e_t = W_{t-1}^T k_t - v_t``, learning rate
    ``eta_t`` (DeltaNet's ``beta_t = sigmoid(w_beta . x_t)``), retention ``alpha_t = exp(g_t)``
    (Gated DeltaNet's decay)::

        grad_t = k_t psi(e_t)^T         (the gradient of the attentional bias at W_{t-1})
        bias "l2":    l = 1/2 |e|^2,             psi(e) = e
        bias "lp":    l = (1/p) |e|_p^p,         psi(e) = e (e^2 + eps)^{(p-2)/2}  (p = 2: e exactly)
        bias "huber": l = Huber_delta (Yaad's Eq. 16: the l2 step while |e|_2 <= delta_t, else
                      delta_t times the l1 step), psi(e) = e if |e| <= delta_t else delta_t e / sqrt(e^2 + eps)
        bias "dot":   l = -<W^T k, v>,           psi(e) = -v  (linear attention's Hebbian write)

        retention "none": W_t = W_{t-1} - eta_t grad_t
        retention "l2":   W_t = alpha_t W_{t-1} - eta_t grad_t                  (Yaad, Titans)
        retention "lq":   A_t = alpha_t A_{t-1} - eta_t grad_t,  W_t = A_t / |A_t|_q^{q-2}  (Moneta)
        retention "kl":   W_t = c Softmax_k(alpha_t log W_{t-1} - eta_t grad_t), W_{-1} = c / d  (Memora)

        o_t = W_t^T q_t,    y_t = W_o Concat_h(RMSNorm(o_t) [* SiLU(W_g x_t)])

    (``|.|_q`` over all entries of a head's ``A``; the KL softmax runs over the key axis of each
    column, so every column of ``W`` is a distribution of mass ``c``.) Named members: Moneta =
    ``bias="lp", p=3, retention="lq", q=4``; Yaad = ``bias="huber", retention="l2"``; Memora =
    ``bias="l2", retention="kl"``. The Huber threshold is data dependent,
    ``delta_t = softplus(w_delta . x_t + b_delta)`` per head.

    The l2 member is DeltaNet: with ``bias="l2"`` (or ``"lp"``, ``p = 2``) and ``retention="none"``,
    ``W_{t-1} - beta_t k_t (W_{t-1}^T k_t - v_t)^T = (I - beta_t k_t k_t^T) W_{t-1} + beta_t k_t v_t^T``,
    DeltaNet's update; the parameters have DeltaNet's names and shapes, so a ``deltanet``
    state dict loads here and the outputs agree (``tests/blocks/mixers/test_miras.py``, float64).
    With ``retention="l2"`` the block has Gated DeltaNet's parameters but not its recurrence:
    Miras takes the gradient at ``W_{t-1}`` and then decays, Gated DeltaNet decays first and
    takes the gradient at ``alpha_t W_{t-1}``; the two updates differ by exactly
    ``(1 - alpha_t) beta_t k_t k_t^T W_{t-1}`` (tested).

    Projections, short convolution, SiLU, L2-normalized q and k, output RMSNorm (and with a
    retention gate, Gated DeltaNet's decay parameters and output gate): as ``deltanet`` /
    ``gated_deltanet`` (see their docstrings), with the same initialization; ``w_delta`` normal
    std ``d_model^{-1/2}``, ``b_delta = softplus^{-1}(sqrt(d))`` (ours; the paper gives none): errors
    of typical size (values have norm of order ``sqrt(d)``) start in the quadratic branch and only
    outliers are clipped, which is the paper's motivation for the Huber bias. (With ``delta_0 = 1``
    nearly every write took the l1 branch at init and a 1-layer model did not learn MQAR in 800
    steps, 8% against Gated DeltaNet's 96%.)

    Shape: ``(B, L, D) -> (B, L, D)``, causal. State ``(W or A, conv_buffer)``: (B, H, d, d) and
    the short convolution's buffer.

    Modes: ``"reference"``: the update token by token. The DeltaNet member (``bias`` l2 / lp with
    ``p = 2``, ``retention="none"``) also has DeltaNet's ``"fused"`` and ``"chunk"`` kernels (its
    default then is ``"fused"``). The other members have no exact parallel form (their updates
    are not linear in ``W``); the paper's chunk-wise training takes every gradient in a chunk at
    the chunk's first state, an approximation that is a different model, not provided here.

    Options: ``bias`` (default ``"huber"``), ``p`` (lp, default 3), ``retention`` (default ``"l2"``),
    ``q`` (lq, default 4), ``kl_mass`` (c, default 1), ``n_heads``, ``conv_size``, ``chunk_size``,
    ``norm_eps``, ``device``, ``dtype``.

    Deviations: the paper's Moneta, Yaad and Memora use a 2-layer MLP memory with a residual
    and LayerNorm and channel-wise (low-rank projected) ``eta_t, alpha_t``; here the memory is
    DeltaNet's matrix and ``eta_t, alpha_t, delta_t`` are per head. Equations were checked
    against the paper's abstract and secondary transcriptions of its Secs. 3-5 (its body was
    not available to this project's search tool).
    """

    _name = "miras"

    def __init__(
        self,
        d_model: int,
        *,
        bias: str = "huber",
        p: float = 3.0,
        retention: str = "l2",
        q: float = 4.0,
        kl_mass: float = 1.0,
        n_heads: int = 4,
        conv_size: int = 4,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if bias not in BIASES:
            raise ConfigError(f"miras: bias (the attentional bias) must be one of {', '.join(BIASES)}, got {bias!r}")
        if retention not in RETENTIONS:
            raise ConfigError(f"miras: retention must be one of {', '.join(RETENTIONS)}, got {retention!r}")
        if not p >= 1.0:
            raise ConfigError(f"miras: p (the lp attentional bias) must be >= 1 (Moneta uses 3), got {p}")
        if not q > 2.0 and retention == "lq":
            raise ConfigError(f"miras: q (the lq retention, W = A / |A|_q^(q-2)) must be > 2 (Moneta uses 4; "
                              f"q = 2 is the l2 retention: use retention='l2'), got {q}")
        if not kl_mass > 0:
            raise ConfigError(f"miras: kl_mass (c, each column's total mass under the KL retention) must be > 0, "
                              f"got {kl_mass}")
        self.bias, self.p, self.retention, self.q, self.kl_mass = bias, float(p), retention, float(q), float(kl_mass)
        self._setup(d_model, n_heads=n_heads, conv_size=conv_size, negative_eigenvalues=False, n_householder=1,
                    gated=retention != "none", chunk_size=chunk_size, norm_eps=norm_eps, device=device, dtype=dtype)
        factory = {"device": device, "dtype": dtype}
        if bias == "huber":
            self.delta_proj = torch.nn.Linear(d_model, self.n_heads, **factory)
            with torch.no_grad():  # delta_0 = sqrt(d): typical errors start in the quadratic (l2) branch
                torch.nn.init.normal_(self.delta_proj.weight, std=d_model ** -0.5)
                delta0 = math.sqrt(self.d_head)
                self.delta_proj.bias.fill_(delta0 + math.log(-math.expm1(-delta0)))  # softplus^-1(delta0)
        if self.gated:
            self.no_weight_decay = ("A_log", "dt_bias")
        self.deltanet_member = retention == "none" and (bias == "l2" or (bias == "lp" and self.p == 2.0))
        self.modes = ("fused", "chunk", "reference") if self.deltanet_member else ("reference",)

    # --- the memory update ---------------------------------------------------------------
    def psi(self, e: Tensor, x_t: Tensor, v: Tensor) -> Tensor:
        """The attentional bias's gradient factor ``psi(e)`` (grad = k psi(e)^T), per head (B, H, d)."""
        if self.bias == "l2" or (self.bias == "lp" and self.p == 2.0):
            return e
        if self.bias == "lp":
            return e * (e.square() + SMOOTH_EPS) ** ((self.p - 2.0) / 2.0)
        if self.bias == "dot":
            return -v
        delta = torch.nn.functional.softplus(self.delta_proj(x_t).to(e.dtype)).unsqueeze(-1)  # (B, H, 1)
        small = e.norm(dim=-1, keepdim=True) <= delta
        return torch.where(small, e, delta * e * torch.rsqrt(e.square() + SMOOTH_EPS))

    def memory(self, S: Tensor) -> Tensor:
        """The memory ``W`` read by queries, from the state tensor (``A`` under the lq retention)."""
        if self.retention != "lq":
            return S
        norm = S.abs().pow(self.q).sum((-2, -1), keepdim=True).pow(1.0 / self.q)
        return S / norm.clamp_min(1e-30) ** (self.q - 2.0)

    def update(self, S: Tensor, k: Tensor, v: Tensor, eta: Tensor, g: Tensor | None, x_t: Tensor) -> Tensor:
        """One token: state S (B, H, d, d), unit key k, value v (B, H, d), eta (B, H), log-decay g
        (B, H) or None, input x_t (B, D) -> the new state."""
        W = self.memory(S)
        e = (k.unsqueeze(-1) * W).sum(-2) - v  # W^T k - v
        step = eta[..., None, None] * k.unsqueeze(-1) * self.psi(e, x_t, v).unsqueeze(-2)  # eta k psi^T
        if self.retention == "none":
            return S - step
        alpha = torch.exp(g)[..., None, None]
        if self.retention in ("l2", "lq"):
            return alpha * S - step
        log_S = torch.log(S.clamp_min(torch.finfo(S.dtype).tiny))  # an underflowed entry stays finite
        return self.kl_mass * torch.softmax(alpha * log_S - step, dim=-2)  # kl: over the key axis

    # --- forward and step ----------------------------------------------------------------
    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode != "reference":
            return super()._forward(x, mode)  # the DeltaNet member's kernels
        return self.step_loop(x)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        state = super().init_state(batch_size, device=device, dtype=dtype)
        if self.retention == "kl":  # the maximum-entropy memory: every column uniform, mass c
            state = (torch.full_like(state[0], self.kl_mass / self.d_head), *state[1:])
        return state

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        S = state[0]
        u = self._project(x_t)
        if self.conv is None:
            c, new_state = u, ()
        else:
            window = torch.cat((state[1], u[:, None]), dim=1) if self.conv_size > 1 else u[:, None]
            c = (window * self.conv.weight[:, 0, :].T).sum(1)
            new_state = (window[:, 1:],) if self.conv_size > 1 else ()
        q, k, v, beta, g = (None if t is None else t[:, :, 0] for t in self._heads(c[:, None], x_t[:, None]))
        S = self.update(S, k[:, :, 0], v[:, :, 0], beta[:, :, 0], g, x_t)
        o = (q.unsqueeze(-1) * self.memory(S)).sum(-2)  # W^T q
        return self._output(o, x_t), (S, *new_state)

    def extra_repr(self) -> str:
        extra = {"lp": f", p={self.p:g}", "huber": ""}.get(self.bias, "")
        ret = {"lq": f", q={self.q:g}", "kl": f", kl_mass={self.kl_mass:g}"}.get(self.retention, "")
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, bias={self.bias!r}{extra}, "
                f"retention={self.retention!r}{ret}, conv_size={self.conv_size}, modes={self.modes}")
