"""Griffin: recurrent blocks (RG-LRU) and local multi-query attention in one residual pattern.

De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models", 2024, arXiv:2402.19427 (Sec. 2).

- :class:`LocalMQA`: Griffin's local (sliding-window) multi-query attention block (Sec. 2.3).
- ``griffin`` (:class:`Griffin`): the pattern of recurrent blocks (:class:`RGLRUBlock`, in
  :mod:`layerlab.blocks.mixers.rglru`) and local attention, packed into one mixer.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import register
from .._common import wide_dtype
from ..norms import RMSNorm
from .attention import rope
from .base import Mixer, State
from .rglru import GRIFFIN, RGLRUBlock, lecun_normal_


class LocalMQA(Mixer):
    r"""Local (sliding-window) multi-query attention, Griffin's attention block (Sec. 2.3).

    Equation, per query head ``i`` (``h`` heads of width ``d_h = D / h``; one key/value head
    shared by all query heads, Shazeer 2019)::

        q_t^i = R_t W_q^i x_t,   k_s = R_s W_k x_s,   v_s = W_v x_s
        o_t^i = sum_{s in S_t} softmax_s(q_t^i · k_s / sqrt(d_h)) v_s,   S_t = {s : t - w < s <= t}
        y_t   = W_o concat_i(o_t^i)

    with ``w = window`` and ``R_t`` the rotary position rotation (``rope=True``; the paper uses
    RoPE; :func:`layerlab.blocks.mixers.attention.rope`, the convention of ``attention``). Shape ``(B, L, D) -> (B, L, D)``, causal.

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
            lecun_normal_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def _project(self, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., D) -> q (..., h, d_h), k (..., d_h), v (..., d_h); pos broadcasts to x[..., 0]."""
        q = self.w_q(x).unflatten(-1, (self.n_heads, self.d_head))
        k, v = self.w_kv(x).chunk(2, dim=-1)
        if self.rope:
            q = rope(q, pos.unsqueeze(-1), self.rope_base)
            k = rope(k, pos, self.rope_base)
        return q, k, v

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        q, k, v = self._project(x, torch.arange(L, device=x.device))
        q = q.transpose(1, 2)  # (B, h, L, d_h)
        if mode == "parallel":
            t = torch.arange(L, device=x.device)
            band = (t[None, :] <= t[:, None]) & (t[:, None] - t[None, :] < self.window)
            # one key/value head for all query heads: enable_gqa lets the kernel share it; a
            # broadcast (B, 1, L, d_h) key instead sends SDPA to its slower path (2x the step here)
            o = F.scaled_dot_product_attention(q, k.unsqueeze(1), v.unsqueeze(1), attn_mask=band, enable_gqa=True)
        else:
            wide = wide_dtype(x.dtype)
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
        weights = torch.softmax(scores, dim=-1, dtype=wide_dtype(x_t.dtype)).to(x_t.dtype)
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

    Recurrent: the state is the tuple of the sub-blocks' states (conv buffer, ``h`` and
    first-token flag of each recurrent block, the ``window``-token KV cache of each attention block): fixed size.

    Initialization: each sub-block's own (see :class:`RGLRUBlock`, :class:`LocalMQA`); RMSNorm
    gains one.

    Options: ``pattern``, ``window`` (local attention window in tokens; the paper uses 1024 for
    sequences of 2048+, the default 64 suits the lab's short tasks), ``n_heads``, ``rope``,
    ``d_rnn``/``expansion``/``c``/``kernel_size``/``normalize_first`` (recurrent blocks; see
    :class:`RGLRUBlock` for the first token), ``eps`` (RMSNorm),
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
        normalize_first: bool = False,
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
                                         kernel_size=kernel_size, normalize_first=normalize_first, **factory))
            else:
                blocks.append(LocalMQA(d_model, n_heads=n_heads, window=window, rope=rope, **factory))
        self.blocks = nn.ModuleList(blocks)
        self.norms = nn.ModuleList(RMSNorm(d_model, eps=eps, **factory) for _ in pattern)
        self._n_state = [len(block.init_state(1)) for block in self.blocks]  # tensors per sub-block

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
