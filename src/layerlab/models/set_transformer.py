r"""The set backbone: Set Transformer blocks (MAB, SAB, ISAB, PMA) and Deep-Sets-style pooling.

Paper: Lee, Lee, Kim, Kosiorek, Choi & Teh, "Set Transformer: A Framework for Attention-based
Permutation-Invariant Neural Networks", 2018 (ICML 2019), arXiv:1810.00825, Section 3.

Equations (Section 3.1-3.2, the paper's notation; X ∈ R^{n×d}, Y ∈ R^{n_y×d})::

    Att(Q, K, V; ω)       = ω(Q Kᵀ) V,                  ω = softmax(· / √d_h) row-wise
    Multihead(Q, K, V)    = concat(O_1, ..., O_h) W^O,  O_j = Att(Q W_j^Q, K W_j^K, V W_j^V)
    MAB(X, Y)             = LayerNorm(H + rFF(H)),      H = LayerNorm(X + Multihead(X, Y, Y))
    SAB(X)                = MAB(X, X)
    ISAB_m(X)             = MAB(X, H),                  H = MAB(I, X),   I ∈ R^{m×d} learned
    PMA_k(Z)              = MAB(S, rFF(Z)),             S ∈ R^{k×d} learned seed vectors
    Encoder(X) = SAB(SAB(X)) or ISAB(ISAB(X));   Decoder(Z) = rFF(SAB(PMA_k(Z)))

SAB and ISAB are permutation equivariant (permuting the rows of X permutes the output rows the
same way), PMA is permutation invariant, so Decoder(Encoder(X)) is invariant (Lemma/Property 1).
The Deep Sets baseline (Zaheer et al. 2017, arXiv:1703.06114) the paper compares with is
ρ(pool_i φ(x_i)) with a row-wise φ ("rFF + Pooling", Table 2): here ``mixer = "rff"`` with a
``"sum"``, ``"mean"`` or ``"max"`` pool.

How a ModelSpec reads on this backbone (``backbone = "set"``)::

    mixer          the encoder block: "sab", "isab" (Set Transformer) or "rff" (Deep Sets φ)
    mixer_options  n_heads (4; attention), m (16; isab's inducing points), pool ("pma", "sum",
                   "mean", "max"), k (1; PMA's seed vectors)
    channel        the row-wise feed-forward rFF (any registered channel mixer, default "mlp")
    norm           the norm of every block (the paper: "layernorm")
    norm_place     "post" (the paper's MAB) or "pre" (H = X + Multihead(N(X), N(Y)), out = H + rFF(N(H)))
    d_model        the width d; n_layers: encoder blocks

Model: x (B, n, F) -> Linear(F, d) -> encoder -> pool -> head -> logits (B, n_outputs). With
``pool = "pma"`` the decoder is the paper's rFF(SAB(PMA_k(Z))) (its last rFF is the linear head
on the k pooled vectors, flattened); with a plain pool, ρ is one residual rFF sub-layer, then the
head. Attention has two forms: ``"sdpa"`` (``F.scaled_dot_product_attention``, default) and
``"reference"`` (the per-head softmax written out), tested equal.

Initialization: the attention projections as the attention mixer's (normal, std d^{-1/2}, zero
biases); inducing points I and seeds S standard normal (the scale of a LayerNorm'ed row); the
input projection normal with std 1/√F, the head normal std 0.02, zero biases; rFF and norms keep
their own initialization. Deviations: no masks (every set of a batch has the same size n); the
attention scale is 1/√d_h per head (the paper writes 1/√d).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError, unknown_name
from ..registry import build
from .sequence import HEAD_STD, Residual, final_norm, norm_factory

SET_MIXERS = ("sab", "isab", "rff")
SET_POOLS = ("pma", "sum", "mean", "max")
SET_OPTIONS: dict[str, Any] = {"n_heads": 4, "m": 16, "pool": "pma", "k": 1}
ATTENTION_MODES = ("sdpa", "reference")
MAB_PLACES = ("post", "pre")


def set_options(mixer: str, options: dict[str, Any]) -> dict[str, Any]:
    """The set backbone's options (``spec.mixer_options``) with their defaults, checked strictly:
    an unknown key, or a key the chosen encoder and pool do not use, is a ConfigError."""
    if mixer not in SET_MIXERS:
        raise unknown_name("set encoder (mixer of backbone 'set')", mixer, SET_MIXERS)
    unknown = sorted(set(options) - set(SET_OPTIONS))
    if unknown:
        raise ConfigError(f"backbone 'set': unknown mixer_options {unknown}; valid: {sorted(SET_OPTIONS)}")
    opts = {**SET_OPTIONS, **options}
    if opts["pool"] not in SET_POOLS:
        raise unknown_name("set pool (mixer_options.pool)", str(opts["pool"]), SET_POOLS)
    for key in ("n_heads", "m", "k"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"backbone 'set': mixer_options.{key} must be an integer >= 1, got {v!r}")
    attends = mixer in ("sab", "isab") or opts["pool"] == "pma"
    unused = [k for k, ok in (("m", mixer == "isab"), ("k", opts["pool"] == "pma"), ("n_heads", attends))
              if k in options and not ok]
    if unused:
        raise ConfigError(f"backbone 'set': mixer = {mixer!r} with pool = {opts['pool']!r} does not use "
                          f"mixer_options {unused}; remove them")
    opts["attends"] = attends
    return opts


def set_width_multiple(mixer: str, options: dict[str, Any]) -> int:
    """Widths must be multiples of the head count where the model attends."""
    opts = set_options(mixer, options)
    return opts["n_heads"] if opts["attends"] else 1


class SetMultihead(nn.Module):
    """Multihead(Q, K, V) of the Set Transformer with K = V = Y: no mask, no causality.

    ``forward(x, y, mode)``: x (B, n_x, d) queries, y (B, n_y, d) keys and values -> (B, n_x, d).
    """

    def __init__(self, d_model: int, n_heads: int, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"set attention: d_model = {d_model} is not a multiple of n_heads = {n_heads}; "
                              f"choose a width divisible by the head count")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        kw = dict(device=device, dtype=dtype)
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model, **kw) for _ in range(4))
        for linear in (self.q, self.k, self.v, self.o):
            nn.init.normal_(linear.weight, std=d_model ** -0.5)
            nn.init.zeros_(linear.bias)

    def _split(self, t: Tensor) -> Tensor:  # (B, n, d) -> (B, h, n, d_h)
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)

    def forward(self, x: Tensor, y: Tensor, mode: str = "sdpa") -> Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(y)), self._split(self.v(y))
        if mode == "sdpa":
            heads = F.scaled_dot_product_attention(q, k, v)
        elif mode == "reference":
            heads = torch.stack([attend(q[:, j], k[:, j], v[:, j]) for j in range(self.n_heads)], dim=1)
        else:
            raise unknown_name("attention mode", str(mode), ATTENTION_MODES)
        return self.o(heads.transpose(1, 2).flatten(-2))


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Att(Q, K, V; ω) = softmax(Q Kᵀ / √d_h) V, one head, written out."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


class MAB(nn.Module):
    """MAB(X, Y) = N(H + rFF(H)), H = N(X + Multihead(X, Y, Y)) ("post", the paper's), or the
    pre-norm form H = X + Multihead(N(X), N(Y)), MAB = H + rFF(N(H)) ("pre")."""

    def __init__(self, spec: Any, n_heads: int, *, place: str) -> None:
        super().__init__()
        if place not in MAB_PLACES:
            raise ConfigError(f"backbone 'set': norm_place must be one of {list(MAB_PLACES)} (the paper's MAB is "
                              f"'post'), got {place!r}")
        d = spec.d_model
        self.place = place
        self.attention = SetMultihead(d, n_heads)
        self.rff = build("channel", spec.channel, d, **spec.channel_options)
        make_norm = norm_factory(spec, d)
        self.norm0, self.norm1 = make_norm(), make_norm()

    def forward(self, x: Tensor, y: Tensor, mode: str = "sdpa") -> Tensor:
        if self.place == "post":
            h = self.norm0(x + self.attention(x, y, mode))
            return self.norm1(h + self.rff(h))
        nx = self.norm0(x)
        h = x + self.attention(nx, nx if y is x else self.norm0(y), mode)
        return h + self.rff(self.norm1(h))


class SAB(nn.Module):
    """SAB(X) = MAB(X, X): permutation equivariant."""

    def __init__(self, spec: Any, n_heads: int, *, place: str) -> None:
        super().__init__()
        self.mab = MAB(spec, n_heads, place=place)

    def forward(self, x: Tensor, mode: str = "sdpa") -> Tensor:
        return self.mab(x, x, mode)


class ISAB(nn.Module):
    """ISAB_m(X) = MAB(X, MAB(I, X)) with m learned inducing points I: equivariant, O(n m)."""

    def __init__(self, spec: Any, n_heads: int, m: int, *, place: str) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(m, spec.d_model))
        self.mab0 = MAB(spec, n_heads, place=place)
        self.mab1 = MAB(spec, n_heads, place=place)

    def forward(self, x: Tensor, mode: str = "sdpa") -> Tensor:
        i = self.inducing.to(x.dtype).expand(x.shape[0], -1, -1)
        return self.mab1(x, self.mab0(i, x, mode), mode)


class PMA(nn.Module):
    """PMA_k(Z) = MAB(S, rFF(Z)) with k learned seed vectors S: permutation invariant, (B, k, d)."""

    def __init__(self, spec: Any, n_heads: int, k: int, *, place: str) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.randn(k, spec.d_model))
        self.rff = build("channel", spec.channel, spec.d_model, **spec.channel_options)
        self.mab = MAB(spec, n_heads, place=place)

    def forward(self, z: Tensor, mode: str = "sdpa") -> Tensor:
        s = self.seeds.to(z.dtype).expand(z.shape[0], -1, -1)
        return self.mab(s, self.rff(z), mode)


class RowFF(nn.Module):
    """Deep Sets' φ layer: a residual row-wise rFF, x_i <- x_i + rFF(N(x_i)) (norm placed by the spec)."""

    def __init__(self, spec: Any) -> None:
        super().__init__()
        channel = build("channel", spec.channel, spec.d_model, **spec.channel_options)
        self.layer = Residual(channel, place=spec.norm_place, make_norm=norm_factory(spec, spec.d_model))

    def forward(self, x: Tensor, mode: str = "sdpa") -> Tensor:
        return self.layer(x)


class SetModel(nn.Module):
    """Set classifier: logits = head(decoder(encoder(W_in x))), invariant to the order of the n rows.

    See the module docstring for the equations and how ``spec`` is read.
    Shape: ``(B, n, F) -> (B, n_outputs)``; ``forward(x, mode=None)`` picks the attention form.
    """

    def __init__(self, spec: Any, *, in_features: int, n_outputs: int) -> None:
        super().__init__()
        if in_features < 1 or n_outputs < 1:
            raise ConfigError(f"SetModel needs in_features, n_outputs >= 1; got {in_features}, {n_outputs}")
        opts = set_options(spec.mixer, spec.mixer_options)
        place = spec.norm_place
        if place not in MAB_PLACES:
            raise ConfigError(f"backbone 'set': norm_place must be one of {list(MAB_PLACES)} (the paper's MAB is "
                              f"'post'), got {place!r}")
        d = spec.d_model
        self.spec, self.in_features, self.pool = spec, int(in_features), opts["pool"]
        self.proj = nn.Linear(in_features, d)
        h = opts["n_heads"]
        if spec.mixer == "sab":
            layers = [SAB(spec, h, place=place) for _ in range(spec.n_layers)]
        elif spec.mixer == "isab":
            layers = [ISAB(spec, h, opts["m"], place=place) for _ in range(spec.n_layers)]
        else:
            layers = [RowFF(spec) for _ in range(spec.n_layers)]
        self.encoder = nn.ModuleList(layers)
        if self.pool == "pma":
            self.pma = PMA(spec, h, opts["k"], place=place)
            self.decoder = SAB(spec, h, place=place)
            pooled = opts["k"] * d
        else:
            self.rho = RowFF(spec)
            pooled = d
        self.norm = final_norm(spec, d)  # on each pooled vector (identity for "post")
        self.head = nn.Linear(pooled, n_outputs)
        nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(self.in_features))
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.head.weight, std=HEAD_STD)
        nn.init.zeros_(self.head.bias)

    def encode(self, x: Tensor, mode: str = "sdpa") -> Tensor:
        """The equivariant part: (B, n, F) -> (B, n, d)."""
        z = self.proj(x)
        for layer in self.encoder:
            z = layer(z, mode)
        return z

    def forward(self, x: Tensor, mode: str | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ShapeError(f"SetModel expects sets of shape (B, n, F) with F = in_features = {self.in_features}; "
                             f"got {tuple(x.shape)}")
        mode = mode or "sdpa"
        z = self.encode(x, mode)
        if self.pool == "pma":
            pooled = self.norm(self.decoder(self.pma(z, mode), mode)).flatten(1)
        else:
            if self.pool == "sum":
                p = z.sum(1)
            elif self.pool == "mean":
                p = z.mean(1)
            else:
                p = z.amax(1)
            pooled = self.norm(self.rho(p))
        return self.head(pooled)
