"""Causal multi-head softmax self-attention, and the rotary positions (`rope`) the attention mixers share."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper, register
from .._common import wide_dtype
from .base import MultiHeadMixer

QK_FORMS = ("separate", "collapsed", "symmetric")


def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al., "RoFormer", 2021, arXiv:2104.09864, Eq. 34).

    Coordinate pair ``(j, j + d/2)`` of ``x (..., d)`` is turned by the angle
    ``m * base^(-2j/d)``, ``m`` the position; ``positions`` broadcasts against ``x[..., 0]``
    (e.g. ``(L,)`` for ``x (B, h, L, d)``, ``(B, 1)`` for one token of each sequence,
    ``x (B, h, d)``). Then ``<rope(q, m), rope(k, n)>`` depends on ``m - n`` only. Angles are
    computed in float64, the result has ``x``'s dtype. The paper pairs adjacent coordinates
    ``(2j, 2j+1)``; pairing the two halves is the same rotation up to a fixed permutation of
    coordinates, which learned projections absorb.
    """
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d // 2, device=x.device, dtype=torch.float64) * 2 / d)
    angle = positions.to(device=x.device, dtype=torch.float64).unsqueeze(-1) * inv_freq
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def causal_softmax(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """``softmax(Q K^T / sqrt(d_h) + M)`` over (..., L, d_h) queries and keys, ``M[t, s] = -inf``
    for ``s > t``: the causal attention weights (..., L, L), in float32 or wider (as fused
    kernels accumulate). ``scale`` replaces ``1 / sqrt(d_h)`` when given."""
    L, d_h = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d_h) if scale is None else scale)
    future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=wide_dtype(scores.dtype))


@register("mixer", "attention", paper=Paper("Attention Is All You Need", 2017, "1706.03762"))
class CausalSelfAttention(MultiHeadMixer):
    r"""Causal multi-head scaled dot-product self-attention.

    Paper: Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762 (Sec. 3.2).

    Equation, per head ``i`` with ``d_h = d_model / h``::

        Q_i = X W_i^Q,   K_i = X W_i^K,   V_i = X W_i^V
        head_i = softmax(Q_i K_i^T / sqrt(d_h) + M) V_i,   M[t, s] = -inf if s > t else 0
        MultiHead(X) = Concat(head_1, ..., head_h) W^O

    ``W^Q, W^K, W^V`` for all heads are one fused ``Linear(d_model, 3 d_model)`` (``w_qkv``);
    ``W^O`` is ``w_o``. The mask ``M`` (the decoder's masking, Sec. 3.2.3) makes the mixer causal.

    Shape: ``(B, L, D) -> (B, L, D)`` with ``D = d_model``; output ``t`` depends on inputs ``<= t``.

    Modes:
        ``"sdpa"`` (default): ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``.
        ``"reference"``: the softmax above written out, with an explicit ``-inf`` mask
        (:meth:`attention_probabilities`, in float32 or wider, as the fused kernels
        accumulate), times ``V``.

    Initialization: ``W^Q, W^K, W^V, W^O`` i.i.d. normal with std ``d_model^(-1/2)`` (fan-in
    scaling, close to the Glorot init of the reference implementation), biases zero. GPT-2's
    fixed std 0.02 is tuned for d = 768; at the arena's widths it leaves attention uniform for
    long and delays the induction-head transition MQAR needs (measured: no recall after 4,000
    steps at d = 64, against recall within ~700 steps with fan-in scaling).

    Options: ``n_heads`` (h), ``bias`` (biases on the projections; the paper's equations have
    none), ``dropout`` (applied to the block's output, the paper's residual dropout, Sec. 5.4),
    ``qk``, ``values`` (reduced attention, below), ``device``, ``dtype``.

    Rotary positions (``rope=True``; Su et al., "RoFormer: Enhanced Transformer with Rotary
    Position Embedding", 2021, arXiv:2104.09864, Eq. 34): each head's query and key at position
    ``m`` are rotated, ``q_m <- R_m q_m``, ``k_n <- R_n k_n``, where ``R_m`` rotates coordinate
    pair ``(j, j + d_h/2)`` by the angle ``m * base^(-2j/d_h)`` (:func:`rope`); then
    ``q_m^T k_n`` depends on ``m - n`` only. With rotary positions the backbone needs no learned positions (``positions = "none"``).
    ``rope_fraction < 1`` rotates only the first ``rope_fraction * d_h`` coordinates of each head
    (partial rotary, as in GPT-NeoX): the rest match content independently of distance.

    Reduced attention (Bermeitinger, Hrycej, Pavone, Kath, Handschuh, "Reducing the Transformer
    Architecture to a Minimum", 2024, arXiv:2410.13732), options whose defaults keep the block above:

    - ``qk="collapsed"``: ``W_i^Q W_i^{K T}`` is one d x d matrix ``W_i`` per head, the score
      ``x_t^T W_i x_s / sqrt(d_h)`` (equal to the separate form when ``W_i = W_i^Q W_i^{K T}``;
      the same size as ``W^Q`` with one head); init ``N(0, d_h / d^2)``, the entry variance of
      that product at the default init.
    - ``qk="symmetric"``: ``W_i`` symmetric, stored as its upper triangle (d(d+1)/2 parameters,
      about half), so the similarity of ``x_t`` and ``x_s`` is that of ``x_s`` and ``x_t``.
    - ``values=False``: no ``W^V`` and no ``W^O`` (both the identity): head ``i`` averages its own
      d_h coordinates of ``x``, ``head_i = softmax(.) X_i``, and the heads are concatenated.

    The paper's "attention without an MLP" is a backbone without channel mixer (not an option here).
    Rotary positions need separate queries and keys (``qk="separate"``).

    Deviations: no dropout on the attention probabilities (the paper does not specify one; with
    output-only dropout both modes draw the same random mask, so they agree in training too);
    no positional information inside the block (the backbone adds positions).
    """

    modes = ("sdpa", "reference")

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        bias: bool = False,
        dropout: float = 0.0,
        rope: bool = False,
        rope_base: float = 10000.0,
        rope_fraction: float = 1.0,
        qk: str = "separate",
        values: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(n_heads) < 1:
            raise ConfigError(f"attention: n_heads must be >= 1, got {n_heads}")
        if d_model % n_heads != 0:
            divisors = [h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]
            raise ConfigError(
                f"attention: d_model={d_model} is not divisible by n_heads={n_heads}; choose "
                f"d_model a multiple of {n_heads} (e.g. {math.ceil(d_model / n_heads) * n_heads}) "
                f"or n_heads among the divisors of {d_model} ({', '.join(map(str, divisors))})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention: dropout must be in [0, 1), got {dropout}")
        if not 0.0 < rope_fraction <= 1.0:
            raise ConfigError(f"attention: rope_fraction must be in (0, 1], got {rope_fraction}")
        self.rope_dims = 2 * int(round(rope_fraction * (d_model // n_heads) / 2))
        if rope and self.rope_dims == 0:
            raise ConfigError(f"attention: rope_fraction={rope_fraction} of head dimension {d_model // n_heads} "
                              "rotates no coordinate pair; raise rope_fraction")
        if rope and (d_model // n_heads) % 2 and rope_fraction == 1.0:
            raise ConfigError(f"attention: rope needs an even head dimension, got d_model/n_heads = {d_model // n_heads}")
        if qk not in QK_FORMS:
            raise ConfigError(f"attention: qk must be one of {', '.join(QK_FORMS)}, got {qk!r}")
        if rope and qk != "separate":
            raise ConfigError(f"attention: rope needs separate queries and keys; use qk='separate' or rope=False "
                              f"(got qk={qk!r})")
        factory = {"device": device, "dtype": dtype}
        self.rope, self.rope_base = bool(rope), float(rope_base)
        self.n_heads = int(n_heads)
        self.d_head = d_model // n_heads
        self.qk, self.values = qk, bool(values)
        # separate: W^Q, W^K (and W^V) fused; collapsed/symmetric: W^V alone (or nothing)
        n_proj = (2 if qk == "separate" else 0) + (1 if self.values else 0)
        self.w_qkv = nn.Linear(d_model, n_proj * d_model, bias=bias, **factory) if n_proj else None
        if qk == "collapsed":
            self.w_qk = nn.Parameter(torch.empty(self.n_heads, d_model, d_model, **factory))
        elif qk == "symmetric":
            self.w_qk = nn.Parameter(torch.empty(self.n_heads, d_model * (d_model + 1) // 2, **factory))
        self.w_o = nn.Linear(d_model, d_model, bias=bias, **factory) if self.values else None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.w_qkv, self.w_o):
            if linear is None:
                continue
            nn.init.normal_(linear.weight, mean=0.0, std=self.d_model ** -0.5)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        if self.qk != "separate":
            nn.init.normal_(self.w_qk, mean=0.0, std=self.d_head ** 0.5 / self.d_model)

    def similarity(self) -> Tensor:
        """``W_i`` (h, d, d) of ``qk="collapsed"`` or ``"symmetric"``: the score is ``x_t^T W_i x_s / sqrt(d_h)``."""
        if self.qk == "collapsed":
            return self.w_qk
        if self.qk == "symmetric":
            d = self.d_model
            i, j = torch.triu_indices(d, d, device=self.w_qk.device)
            W = self.w_qk.new_zeros(self.n_heads, d, d)
            W[:, i, j] = self.w_qk
            return W + W.triu(1).transpose(-2, -1)
        raise ConfigError("attention: similarity() exists for qk='collapsed' or 'symmetric'; with separate "
                          "projections it is W_i^Q W_i^K^T")

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) -> Q, K, V each (B, h, L, d_h)."""
        B, L, _ = x.shape
        if self.qk != "separate" or not self.values:
            return self._reduced_heads(x)
        qkv = self.w_qkv(x).view(B, L, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rope:
            r, pos = self.rope_dims, torch.arange(L, device=x.device)
            q = torch.cat((rope(q[..., :r], pos, self.rope_base), q[..., r:]), dim=-1)
            k = torch.cat((rope(k[..., :r], pos, self.rope_base), k[..., r:]), dim=-1)
        return q, k, v

    def _reduced_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The reduced forms: queries and keys with ``q k^T = x_t^T W_i x_s`` (collapsed and
        symmetric: ``q = x W_i``, ``k = x``, both d wide), values ``x W^V`` or ``x`` itself."""
        B, L, D = x.shape
        h = self.n_heads
        proj = self.w_qkv(x) if self.w_qkv is not None else None
        if self.qk == "separate":
            q, k = proj[..., :2 * D].view(B, L, 2, h, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = torch.einsum("bld,hde->bhle", x, self.similarity())
            k = x.unsqueeze(1).expand(B, h, L, D)
        v = proj[..., -D:] if self.values else x
        return q, k, v.reshape(B, L, h, self.d_head).transpose(1, 2)

    def cache_size(self, length: int) -> int:
        """Scalars of the key/value cache for one sequence of ``length`` tokens (grows with it)."""
        return 2 * int(length) * self.d_model

    def attention_probabilities(self, x: Tensor) -> Tensor:
        """``softmax(Q_i K_i^T / sqrt(d_h) + M)`` of every head for ``x`` (B, L, D): (B, h, L, L),
        row ``t`` the weights query ``t`` puts on keys ``0..t`` (rotary positions applied as in
        ``forward``), in float32 or wider. The reference form multiplies them into ``V``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ShapeError(f"{type(self).__name__}.attention_probabilities expects x of shape (B, L, D) "
                             f"with D = d_model = {self.d_model}; got {tuple(x.shape)}")
        q, k, _ = self._heads(x)
        return causal_softmax(q, k, 1 / math.sqrt(self.d_head))

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        q, k, v = self._heads(x)
        scale = 1 / math.sqrt(self.d_head)
        if mode == "sdpa":
            heads = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        else:
            heads = causal_softmax(q, k, scale).to(v.dtype) @ v
        concat = heads.transpose(1, 2).reshape(B, L, D)
        return self.dropout(self.w_o(concat) if self.w_o is not None else concat)

    def extra_repr(self) -> str:
        reduced = "" if self.qk == "separate" and self.values else f", qk={self.qk!r}, values={self.values}"
        return f"d_model={self.d_model}, n_heads={self.n_heads}, rope={self.rope}{reduced}, modes={self.modes}"
