r"""A gated diagonal linear RNN that computes linear self-attention exactly.

Paper: Zucchet, Kobayashi, Akram, von Oswald, Larcher, Steger & Sacramento, "Gated recurrent neural
networks discover attention", 2023, arXiv:2309.01775 (Sec. 3 and Fig. 1: the construction; its exact
matrices are in the paper's Appendix A.1).

Linear self-attention (LSA), one head, the paper's notation, inputs ``x_t`` in R^d::

    y_t = sum_{t' <= t} (W_V x_{t'}) (W_K x_{t'})^T (W_Q x_t),

several heads summed through an output projection ``P``: ``y_t = P concat_h(y_t^h)``.

The gated RNN layer (linear recurrent neurons between two multiplicative gates, no biases;
``x~_t = [x_t, 1]``: the constant input lets the gates carry queries into the recurrence, as the
paper's Fig. 1 does)::

    g_in(x~)  = (W_in^m x~) (.) (W_in^x x~)                input gating
    h_t       = lambda (.) h_{t-1} + g_in(x~_t)            diagonal linear recurrence, h_{-1} = 0
    g_out(h)  = (W_out^m h) (.) (W_out^x h)                output gating
    y_t       = D g_out(h_t)                               linear readout

The construction (:func:`construct`), per head with key/query size ``d_k`` and value size ``d_v``:

- ``d_v d_k`` key-value neurons ``(a, b)`` with ``lambda = 1``: input gate rows ``W_V[a]`` and
  ``W_K[b]``, so ``h_t[a, b] = sum_{t'<=t} (W_V x_{t'})_a (W_K x_{t'})_b``, the state ``sum v k^T``;
- ``d_k`` query neurons ``b`` with ``lambda = 0``: rows ``W_Q[b]`` and the constant input, so
  ``h_t[b] = (W_Q x_t)_b``;
- output gating units ``(a, b)``: ``h_t[a, b] * h_t[b]``; ``D`` sums them over ``b`` (times ``P``):
  ``y_t = sum_b (sum v k^T)_{ab} q_b``, exactly LSA.

``d_k (d_v + 1)`` recurrent neurons per head. With ``lambda = gamma`` on the key-value neurons the
same RNN computes LSA with an exponential decay ``gamma^{t - t'}`` on its terms (:func:`lsa`'s
``decay``); a query neuron with ``lambda != 0`` mixes past queries in and breaks the equality (both tested).

Verified against the paper: the layer (diagonal linear recurrence, input and output multiplicative
gating, no biases, a constant 1 appended to the input to send queries to recurrent neurons, the
readout ``D`` summing the products of key-values and queries) is the one of its Fig. 1 and Sec. 3;
the neuron-level matrices are written here from that description (Appendix A.1 not retrieved).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["GatedRNN", "construct", "gated_rnn", "lsa"]


@dataclass(frozen=True)
class GatedRNN:
    """Weights of the gated linear RNN layer: ``w_in_m, w_in_x`` (n, d+1), ``lam`` (n,),
    ``w_out_m, w_out_x`` (p, n), ``readout`` (d_out, p)."""

    w_in_m: Tensor
    w_in_x: Tensor
    lam: Tensor
    w_out_m: Tensor
    w_out_x: Tensor
    readout: Tensor

    @property
    def neurons(self) -> int:
        return int(self.lam.shape[0])


def _heads(w: Tensor, name: str) -> Tensor:
    if w.dim() == 2:
        return w[None]
    if w.dim() != 3:
        raise ShapeError(f"{name} must be (out, d) for one head or (H, out, d) for H heads; got {tuple(w.shape)}")
    return w


def lsa(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, p: Tensor | None = None, *, decay: float = 1.0) -> Tensor:
    """Reference LSA: ``y_t = P concat_h sum_{t'<=t} decay^{t-t'} (W_V^h x_{t'}) (W_K^h x_{t'})^T (W_Q^h x_t)``.

    ``x`` (..., T, d); ``w_q, w_k`` (H, d_k, d) or (d_k, d); ``w_v`` (H, d_v, d) or (d_v, d); ``p``
    (d_out, H d_v) or None (the heads' outputs concatenated)."""
    w_q, w_k, w_v = _heads(w_q, "W_Q"), _heads(w_k, "W_K"), _heads(w_v, "W_V")
    T = x.shape[-2]
    t = torch.arange(T, device=x.device)
    lag = (t[:, None] - t[None, :]).to(x.dtype)
    weight = torch.where(lag >= 0, torch.as_tensor(decay, dtype=x.dtype) ** lag.clamp(min=0), torch.zeros_like(lag))
    q, k, v = (torch.einsum("hed,...td->...hte", w, x) for w in (w_q, w_k, w_v))
    scores = q @ k.transpose(-2, -1) * weight  # (..., H, t, t'): k_{t'}^T q_t, causal, decayed
    heads = scores @ v  # (..., H, T, d_v)
    y = torch.cat(heads.unbind(-3), dim=-1)
    return y if p is None else y @ p.T


def gated_rnn(rnn: GatedRNN, x: Tensor) -> Tensor:
    """The gated RNN layer on ``x`` (..., T, d), token by token (reference form of the paper's layer)."""
    if rnn.w_in_m.shape[-1] != x.shape[-1] + 1:
        raise ShapeError(f"gated_rnn: the input gates take [x, 1] of size {rnn.w_in_m.shape[-1]}, so x needs "
                         f"{rnn.w_in_m.shape[-1] - 1} features; got {x.shape[-1]}")
    xt = torch.cat((x, torch.ones_like(x[..., :1])), dim=-1)
    g_in = (xt @ rnn.w_in_m.T) * (xt @ rnn.w_in_x.T)  # (..., T, n)
    h = torch.zeros_like(g_in[..., 0, :])
    ys = []
    for t in range(x.shape[-2]):
        h = rnn.lam * h + g_in[..., t, :]
        ys.append(((h @ rnn.w_out_m.T) * (h @ rnn.w_out_x.T)) @ rnn.readout.T)
    return torch.stack(ys, dim=-2)


def construct(w_q: Tensor, w_k: Tensor, w_v: Tensor, p: Tensor | None = None, *, decay: float = 1.0,
              query_memory: float = 0.0) -> GatedRNN:
    """The gated RNN whose output equals ``lsa(x, w_q, w_k, w_v, p, decay=decay)`` for every ``x``.

    ``query_memory`` sets ``lambda`` of the query neurons (0 in the construction; anything else breaks it)."""
    w_q, w_k, w_v = _heads(w_q, "W_Q"), _heads(w_k, "W_K"), _heads(w_v, "W_V")
    H, d_k, d = w_q.shape
    d_v = w_v.shape[1]
    if w_k.shape != w_q.shape or w_v.shape[::2] != (H, d):
        raise ShapeError(f"construct: W_Q and W_K must be (H, d_k, d) and W_V (H, d_v, d); got {tuple(w_q.shape)}, "
                         f"{tuple(w_k.shape)}, {tuple(w_v.shape)}")
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"construct: decay is the key-value neurons' lambda, in [0, 1] (1: plain LSA); got {decay}")
    if p is None:
        p = torch.eye(H * d_v, dtype=w_q.dtype, device=w_q.device)
    if p.shape[-1] != H * d_v:
        raise ShapeError(f"construct: P must be (d_out, H d_v) = (*, {H * d_v}); got {tuple(p.shape)}")
    f = {"dtype": w_q.dtype, "device": w_q.device}
    n_kv, n_q = d_v * d_k, d_k
    n = H * (n_kv + n_q)
    w_in_m, w_in_x = torch.zeros(n, d + 1, **f), torch.zeros(n, d + 1, **f)
    lam = torch.zeros(n, **f)
    w_out_m, w_out_x = torch.zeros(H * n_kv, n, **f), torch.zeros(H * n_kv, n, **f)
    sums = torch.zeros(H * d_v, H * n_kv, **f)  # D before P: sums the products over b
    for h in range(H):
        kv0, q0, out0 = h * (n_kv + n_q), h * (n_kv + n_q) + n_kv, h * n_kv
        for a in range(d_v):
            for b in range(d_k):
                i = kv0 + a * d_k + b
                w_in_m[i, :d], w_in_x[i, :d], lam[i] = w_v[h, a], w_k[h, b], decay
                o = out0 + a * d_k + b
                w_out_m[o, i], w_out_x[o, q0 + b] = 1.0, 1.0
                sums[h * d_v + a, o] = 1.0
        for b in range(d_k):
            w_in_m[q0 + b, :d], w_in_x[q0 + b, d], lam[q0 + b] = w_q[h, b], 1.0, query_memory
    return GatedRNN(w_in_m, w_in_x, lam, w_out_m, w_out_x, p @ sums)
