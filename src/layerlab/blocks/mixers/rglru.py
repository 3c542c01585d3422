"""Hawk's recurrent block (RG-LRU) and Griffin's mix of recurrent blocks and local attention.

De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models", 2024, arXiv:2402.19427.

- ``rglru`` (:class:`RGLRUBlock`): the recurrent temporal-mixing block of Hawk (Sec. 2.4, Fig. 2c).
- ``griffin`` (:class:`Griffin`): Griffin's residual pattern of recurrent blocks and local
  multi-query attention (:class:`LocalMQA`), packed into one mixer.
- :func:`linear_scan`: the associative scan of ``h_t = a_t h_{t-1} + b_t`` the fast form uses.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from ..norms import RMSNorm
from .base import Mixer, State

GRIFFIN = Paper(
    "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models",
    2024, "2402.19427",
)


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _lecun_(weight: Tensor) -> None:
    """LeCun normal init: std = fan_in^(-1/2) (the paper's init of the gate weights)."""
    nn.init.normal_(weight, mean=0.0, std=weight.shape[-1] ** -0.5)


def linear_scan(a: Tensor, b: Tensor) -> Tensor:
    r"""All states of ``h_t = a_t * h_{t-1} + b_t`` with ``h_{-1} = 0``, along dim 1.

    ``a, b`` of shape ``(B, L, ...)``. Hillis–Steele inclusive scan over the associative operator
    ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``: ``ceil(log2 L)`` vectorized sweeps, each
    combining every element with the one ``2^k`` places earlier. Products of gates in ``[0, 1]``
    never overflow, so it is stable where a cumulative product/division form is not.
    """
    L = a.shape[1]
    offset = 1
    while offset < L:
        a_prev = F.pad(a[:, :-offset], (0, 0) * (a.dim() - 2) + (offset, 0), value=1.0)
        b_prev = F.pad(b[:, :-offset], (0, 0) * (b.dim() - 2) + (offset, 0), value=0.0)
        b = b + a * b_prev
        a = a * a_prev
        offset *= 2
    return b


class _SqrtBoundedGrad(torch.autograd.Function):
    """sqrt(x) with its derivative clipped at 1000 (as the official code does: 1 - a_t^2 can
    underflow to 0 when a_t rounds to 1, and sqrt's derivative would be infinite)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad / torch.sqrt(torch.clamp(4.0 * x, min=1e-6))


def _check_rglru_options(d_rnn: int | None, expansion: float, c: float, kernel_size: int,
                         a_min: float, a_max: float) -> None:
    if d_rnn is not None and int(d_rnn) < 1:
        raise ConfigError(f"rglru: d_rnn must be >= 1 (or None to use expansion), got {d_rnn}")
    if d_rnn is None and not expansion > 0:
        raise ConfigError(f"rglru: expansion must be > 0, got {expansion}")
    if not c > 0:
        raise ConfigError(f"rglru: c must be > 0 (the paper uses 8), got {c}")
    if int(kernel_size) < 1:
        raise ConfigError(f"rglru: kernel_size must be >= 1 (the paper uses 4), got {kernel_size}")
    if not 0.0 < a_min < a_max < 1.0:
        raise ConfigError(
            f"rglru: need 0 < a_min < a_max < 1 for the init range of a^c, got a_min={a_min}, "
            f"a_max={a_max} (the paper uses 0.9 and 0.999)"
        )


@register("mixer", "rglru", paper=GRIFFIN)
class RGLRUBlock(Mixer):
    r"""Hawk's recurrent block around the Real-Gated Linear Recurrent Unit (RG-LRU).

    Paper: De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for
    Efficient Language Models", 2024, arXiv:2402.19427 (Sec. 2.4, Fig. 2c; Appendix A).

    Block (Fig. 2c), with ``N = D_RNN``::

        gate  = GeLU(W_g x)                       (D -> N)
        u     = W_in x                            (D -> N)
        v_t   = b_conv + sum_{j<k} w_j ⊙ u_{t-j}  (causal depthwise Conv1D, k = kernel_size = 4)
        h     = RG-LRU(v)
        y     = W_out (gate ⊙ h)                  (N -> D)

    RG-LRU (Eqs. 1-4), element-wise over the ``N`` channels::

        r_t = σ(W_a v_t + b_a)                    recurrence gate
        i_t = σ(W_x v_t + b_x)                    input gate
        a_t = a^(c r_t),  a = σ(Λ),  c = 8        computed in log space (Appendix A):
              log a_t = -c r_t softplus(-Λ)
        h_t = a_t ⊙ h_{t-1} + sqrt(1 - a_t²) ⊙ (i_t ⊙ v_t),   h_{-1} = 0;   output h_t

    The gates never see ``h_{t-1}``, so the recurrence is linear in ``h`` with ``a_t`` in
    ``[0, 1]``: the fast form is a parallel scan.

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"scan"`` (default): the convolution by ``conv1d`` and the recurrence by the associative
        scan :func:`linear_scan` (log2 L vectorized sweeps).
        ``"reference"``: the equations token by token (the loop of :meth:`step`).

    Recurrent: ``step`` keeps the last ``kernel_size - 1`` conv inputs and ``h``; the state is
    ``N (kernel_size - 1) + N`` numbers per sequence.

    Initialization: ``Λ`` such that ``a^c`` is uniform in ``[a_min, a_max] = [0.9, 0.999]``
    (Sec. 2.4), i.e. ``a = U^(1/c)``, ``Λ = logit(a)``; gate weights ``W_a, W_x`` LeCun normal
    (std ``fan_in^-1/2``) as the paper states, their biases zero; the other linear layers LeCun
    normal with zero bias; conv taps normal with std ``kernel_size^-1/2``, bias zero.

    Options: ``d_rnn`` (``N``; default ``round(expansion * d_model)``), ``expansion`` (4/3: the
    paper's RNN width is about 4D/3, so the block has the ~4D² parameters of an attention
    block), ``c``, ``kernel_size``, ``a_min``/``a_max`` (init range of ``a^c``), ``bias``
    (biases of ``W_g, W_in, W_out``), ``device``, ``dtype``.

    Differences from the paper / official code: the official code (recurrentgemma) draws ``a``
    (not ``a^c``) with ``a²`` uniform in ``[0.9², 0.999²]`` and uses block-diagonal gate weights
    and a conv init of variance ``0.01 / k``; here the gates are dense, as in the paper's
    equations, and the init follows the paper's text. Exact (erf) GeLU. The recurrence and
    gates run in float32 or wider; the output has the input dtype. sqrt's derivative is clipped
    at 1000, as in the official code (it only acts when ``1 - a_t²`` underflows).
    """

    modes = ("scan", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        d_rnn: int | None = None,
        expansion: float = 4 / 3,
        c: float = 8.0,
        kernel_size: int = 4,
        a_min: float = 0.9,
        a_max: float = 0.999,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        _check_rglru_options(d_rnn, expansion, c, kernel_size, a_min, a_max)
        factory = {"device": device, "dtype": dtype}
        n = int(d_rnn) if d_rnn is not None else max(1, round(expansion * d_model))
        self.d_rnn, self.c, self.kernel_size = n, float(c), int(kernel_size)
        self.a_min, self.a_max = float(a_min), float(a_max)
        self.w_g = nn.Linear(d_model, n, bias=bias, **factory)
        self.w_in = nn.Linear(d_model, n, bias=bias, **factory)
        self.conv_weight = nn.Parameter(torch.empty(n, self.kernel_size, **factory))
        self.conv_bias = nn.Parameter(torch.empty(n, **factory))
        self.w_a = nn.Linear(n, n, **factory)  # recurrence gate
        self.w_x = nn.Linear(n, n, **factory)  # input gate
        self.lam = nn.Parameter(torch.empty(n, **factory))  # Λ, a = σ(Λ)
        self.w_out = nn.Linear(n, d_model, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w_g, self.w_in, self.w_a, self.w_x, self.w_out):
            _lecun_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        _lecun_(self.conv_weight)
        nn.init.zeros_(self.conv_bias)
        with torch.no_grad():
            # a^c ~ U[a_min, a_max]  =>  a = U^(1/c),  Λ = logit(a) = log a - log(1 - a)
            u = torch.empty_like(self.lam, dtype=torch.float64).uniform_(self.a_min, self.a_max)
            log_a = torch.log(u) / self.c
            self.lam.copy_(log_a - torch.log(-torch.expm1(log_a)))

    # --- the RG-LRU, element-wise -----------------------------------------------------
    def _gates(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``a_t`` and the normalized input ``sqrt(1 - a_t²) ⊙ i_t ⊙ v_t``, in float32 or wider."""
        wide = _wide(v.dtype)
        v = v.to(wide)
        r = torch.sigmoid(F.linear(v, self.w_a.weight.to(wide), self.w_a.bias.to(wide)))
        i = torch.sigmoid(F.linear(v, self.w_x.weight.to(wide), self.w_x.bias.to(wide)))
        log_a = -self.c * r * F.softplus(-self.lam.to(wide))
        a = torch.exp(log_a)
        norm = _SqrtBoundedGrad.apply(-torch.expm1(2.0 * log_a))  # sqrt(1 - a_t²), accurate near a_t = 1
        return a, norm * (i * v)

    def _conv(self, u: Tensor) -> Tensor:
        """Causal depthwise conv over (B, L, N): v_t = b + sum_j w[:, k-1-j] u_{t-j}."""
        k = self.kernel_size
        out = F.conv1d(F.pad(u.transpose(1, 2), (k - 1, 0)), self.conv_weight.unsqueeze(1),
                       self.conv_bias, groups=self.d_rnn)
        return out.transpose(1, 2)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
            ys = []
            for t in range(x.shape[1]):
                y_t, state = self._step(x[:, t], state)
                ys.append(y_t)
            return torch.stack(ys, dim=1)
        gate = F.gelu(self.w_g(x))
        v = self._conv(self.w_in(x))
        a, b = self._gates(v)
        h = linear_scan(a, b)
        return self.w_out(gate * h.to(x.dtype))

    # --- token by token ---------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        conv = torch.zeros(batch_size, self.kernel_size - 1, self.d_rnn, **f)
        h = torch.zeros(batch_size, self.d_rnn, device=f["device"], dtype=_wide(f["dtype"]))
        return conv, h

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        conv, h = state
        gate = F.gelu(self.w_g(x_t))
        u_t = self.w_in(x_t)
        window = torch.cat((conv, u_t.unsqueeze(1)), dim=1)  # u_{t-k+1} .. u_t
        v_t = self.conv_bias + (window * self.conv_weight.t()).sum(dim=1)
        a_t, b_t = self._gates(v_t)
        h = a_t * h + b_t
        y_t = self.w_out(gate * h.to(x_t.dtype))
        return y_t, (window[:, 1:], h)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_rnn={self.d_rnn}, c={self.c}, kernel_size={self.kernel_size}"


def _rope(x: Tensor, pos: Tensor, base: float) -> Tensor:
    """Rotary positions: coordinate pair ``(j, j + d/2)`` of ``x (..., d)`` turned by the angle
    ``pos * base^(-2j/d)``; ``pos`` broadcasts against ``x[..., 0]``. Same convention as
    :meth:`CausalSelfAttention.rotate`."""
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d // 2, device=x.device, dtype=torch.float64) * 2 / d)
    angle = pos.to(torch.float64).unsqueeze(-1) * inv_freq
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LocalMQA(Mixer):
    r"""Local (sliding-window) multi-query attention, Griffin's attention block (Sec. 2.3).

    Equation, per query head ``i`` (``h`` heads of width ``d_h = D / h``; one key/value head
    shared by all query heads, Shazeer 2019)::

        q_t^i = R_t W_q^i x_t,   k_s = R_s W_k x_s,   v_s = W_v x_s
        o_t^i = sum_{s in S_t} softmax_s(q_t^i · k_s / sqrt(d_h)) v_s,   S_t = {s : t - w < s <= t}
        y_t   = W_o concat_i(o_t^i)

    with ``w = window`` and ``R_t`` the rotary position rotation (``rope=True``; the paper uses
    RoPE). Shape ``(B, L, D) -> (B, L, D)``, causal.

    Modes: ``"parallel"`` (default): ``scaled_dot_product_attention`` with a band mask;
    ``"reference"``: the window sum above, position by position.

    Recurrent: ``step`` keeps a KV cache of the last ``window`` tokens (fixed size: a ring of
    ``window`` keys and values, their validity flags, and the position counter).

    Initialization: all projections LeCun normal (std ``fan_in^-1/2``), biases zero.
    Not registered on its own: :class:`Griffin` builds it.
    """

    modes = ("parallel", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        window: int = 64,
        rope: bool = True,
        rope_base: float = 10000.0,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        _check_attention_options("local attention", d_model, n_heads, window, rope)
        factory = {"device": device, "dtype": dtype}
        self.n_heads, self.d_head, self.window = int(n_heads), d_model // n_heads, int(window)
        self.rope, self.rope_base = bool(rope), float(rope_base)
        self.w_q = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.w_kv = nn.Linear(d_model, 2 * self.d_head, bias=bias, **factory)
        self.w_o = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w_q, self.w_kv, self.w_o):
            _lecun_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def _project(self, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., D) -> q (..., h, d_h), k (..., d_h), v (..., d_h); pos broadcasts to x[..., 0]."""
        q = self.w_q(x).unflatten(-1, (self.n_heads, self.d_head))
        k, v = self.w_kv(x).chunk(2, dim=-1)
        if self.rope:
            q = _rope(q, pos.unsqueeze(-1), self.rope_base)
            k = _rope(k, pos, self.rope_base)
        return q, k, v

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        q, k, v = self._project(x, torch.arange(L, device=x.device))
        q = q.transpose(1, 2)  # (B, h, L, d_h)
        if mode == "parallel":
            t = torch.arange(L, device=x.device)
            band = (t[None, :] <= t[:, None]) & (t[:, None] - t[None, :] < self.window)
            o = F.scaled_dot_product_attention(q, k.unsqueeze(1), v.unsqueeze(1), attn_mask=band)
        else:
            wide = _wide(x.dtype)
            outs = []
            for t in range(L):
                lo = max(0, t - self.window + 1)
                scores = torch.einsum("bhd,bsd->bhs", q[:, :, t], k[:, lo:t + 1])
                weights = torch.softmax(scores / math.sqrt(self.d_head), dim=-1, dtype=wide).to(x.dtype)
                outs.append(torch.einsum("bhs,bsd->bhd", weights, v[:, lo:t + 1]))
            o = torch.stack(outs, dim=2)
        return self.w_o(o.transpose(1, 2).reshape(B, L, D))

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        keys = torch.zeros(batch_size, self.window, self.d_head, **f)
        values = torch.zeros(batch_size, self.window, self.d_head, **f)
        valid = torch.zeros(batch_size, self.window, dtype=torch.bool, device=f["device"])
        pos = torch.zeros(batch_size, dtype=torch.long, device=f["device"])
        return keys, values, valid, pos

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        keys, values, valid, pos = state
        q, k, v = self._project(x_t, pos)  # q (B, h, d_h), k, v (B, d_h)
        keys = torch.cat((keys[:, 1:], k.unsqueeze(1)), dim=1)  # oldest first, newest last
        values = torch.cat((values[:, 1:], v.unsqueeze(1)), dim=1)
        valid = torch.cat((valid[:, 1:], torch.ones_like(valid[:, :1])), dim=1)
        scores = torch.einsum("bhd,bsd->bhs", q, keys) / math.sqrt(self.d_head)
        scores = scores.masked_fill(~valid.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1, dtype=_wide(x_t.dtype)).to(x_t.dtype)
        o = torch.einsum("bhs,bsd->bhd", weights, values)
        return self.w_o(o.flatten(1)), (keys, values, valid, pos + 1)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, window={self.window}, rope={self.rope}"


def _check_attention_options(name: str, d_model: int, n_heads: int, window: int, rope: bool) -> None:
    if int(n_heads) < 1:
        raise ConfigError(f"{name}: n_heads must be >= 1, got {n_heads}")
    if d_model % n_heads != 0:
        raise ConfigError(
            f"{name}: d_model={d_model} is not divisible by n_heads={n_heads}; choose d_model a "
            f"multiple of {n_heads} (e.g. {math.ceil(d_model / n_heads) * n_heads}) or another n_heads"
        )
    if rope and (d_model // n_heads) % 2:
        raise ConfigError(
            f"{name}: rope needs an even head dimension, got d_model/n_heads = {d_model // n_heads}; "
            f"make d_model a multiple of {2 * n_heads} or set rope=False"
        )
    if int(window) < 1:
        raise ConfigError(f"{name}: window must be >= 1 token, got {window}")


@register("mixer", "griffin", paper=GRIFFIN)
class Griffin(Mixer):
    r"""Griffin's temporal mixing: recurrent blocks and local attention in a residual pattern.

    Paper: De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for
    Efficient Language Models", 2024, arXiv:2402.19427 (Sec. 2, Fig. 2a): Griffin stacks
    residual blocks ``x <- x + M(RMSNorm(x))``, ``x <- x + MLP(RMSNorm(x))`` whose temporal
    mixing ``M`` cycles through two recurrent blocks and one local MQA block.

    One layer of the backbone holds one mixer, so this mixer holds the pattern: for each
    character of ``pattern`` (``"r"``: :class:`RGLRUBlock`, ``"a"``: :class:`LocalMQA`), a
    pre-norm residual sub-block, and it returns the sum of their increments::

        z_0 = x;   z_k = z_{k-1} + M_k(RMSNorm_k(z_{k-1}));   y = z_K - x = sum_k M_k(...)

    so the backbone's residual ``x + y`` continues the same residual stream. With the default
    ``pattern = "rra"`` one backbone layer is the paper's cycle of three temporal-mixing blocks.

    Shape: ``(B, L, D) -> (B, L, D)``, causal (every sub-block is).

    Modes: ``"parallel"`` (default): the scan form of each recurrent block and the band-masked
    attention of each local attention block; ``"reference"``: each sub-block's reference form.

    Recurrent: the state is the tuple of the sub-blocks' states (conv buffer and ``h`` of each
    recurrent block, the ``window``-token KV cache of each attention block): fixed size.

    Initialization: each sub-block's own (see :class:`RGLRUBlock`, :class:`LocalMQA`); RMSNorm
    gains one.

    Options: ``pattern``, ``window`` (local attention window in tokens; the paper uses 1024 for
    sequences of 2048+, the default 64 suits the lab's short tasks), ``n_heads``, ``rope``,
    ``d_rnn``/``expansion``/``c``/``kernel_size`` (recurrent blocks), ``eps`` (RMSNorm),
    ``device``, ``dtype``.

    Differences from the paper: no gated MLP between the temporal-mixing sub-blocks (the
    backbone's channel mixer follows the whole pattern), so a layer here has three mixing
    blocks per MLP where the paper has one; with ``pattern = "r"`` and ``"a"`` every layer is
    Hawk-like or local-attention-only. The attention blocks use query-head-width ``D / h``
    rather than the paper's fixed 128.
    """

    modes = ("parallel", "reference")
    recurrent = True

    @classmethod
    def width_multiple(cls, *, pattern: str = "rra", n_heads: int = 4, rope: bool = True, **_: Any) -> int:
        """Local attention splits d_model into n_heads heads (of even width with rope)."""
        if "a" not in str(pattern):
            return 1
        return int(n_heads) * (2 if rope else 1)

    def __init__(
        self,
        d_model: int,
        *,
        pattern: str = "rra",
        window: int = 64,
        n_heads: int = 4,
        rope: bool = True,
        d_rnn: int | None = None,
        expansion: float = 4 / 3,
        c: float = 8.0,
        kernel_size: int = 4,
        eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if not isinstance(pattern, str) or not pattern or set(pattern) - {"r", "a"}:
            raise ConfigError(
                f"griffin: pattern is a non-empty string of 'r' (recurrent block) and 'a' (local "
                f"attention), e.g. 'rra' (the paper's); got {pattern!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.pattern = pattern
        blocks: list[Mixer] = []
        for kind in pattern:
            if kind == "r":
                blocks.append(RGLRUBlock(d_model, d_rnn=d_rnn, expansion=expansion, c=c,
                                         kernel_size=kernel_size, **factory))
            else:
                blocks.append(LocalMQA(d_model, n_heads=n_heads, window=window, rope=rope, **factory))
        self.blocks = nn.ModuleList(blocks)
        self.norms = nn.ModuleList(RMSNorm(d_model, eps=eps, **factory) for _ in pattern)
        self._n_state = [2 if kind == "r" else 4 for kind in pattern]

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        z, total = x, None
        for norm, block in zip(self.norms, self.blocks):
            sub = "reference" if mode == "reference" else block.modes[0]
            delta = block(norm(z), mode=sub)
            z = z + delta
            total = delta if total is None else total + delta
        return total

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return tuple(s for block in self.blocks for s in block.init_state(batch_size, **f))

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        z, total, new_state, i = x_t, None, [], 0
        for norm, block, n in zip(self.norms, self.blocks, self._n_state):
            delta, sub_state = block._step(norm(z), state[i:i + n])
            i += n
            new_state.extend(sub_state)
            z = z + delta
            total = delta if total is None else total + delta
        return total, tuple(new_state)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, pattern={self.pattern!r}"
