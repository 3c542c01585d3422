r"""Attention, selective SSMs and gated RNNs written as one linear time-varying system (the DSF).

Paper: Sieber, Amo Alonso, Didier, Zeilinger & Orvieto, "Understanding the differences in
Foundation Models: Attention, State Space Models, and Recurrent Neural Networks", 2024,
arXiv:2405.15731 (the Dynamical Systems Framework, DSF).

The framework (the paper's notation). Every model maps inputs ``u_i`` in R^d to outputs ``y_i``
through a state ``h_i`` in R^N, ``N = n d`` (``n`` the state expansion), with input-dependent
matrices and ``h_{-1} = 0``::

    h_i = Lambda_i h_{i-1} + B_i u_i,        y_i = C_i h_i + D_i u_i,

``Lambda_i`` (N x N, diagonal in every model here), ``B_i`` (N x d), ``C_i`` (d x N), ``D_i`` (d x d).
Unrolled, ``y = Phi u`` with the lower block-triangular matrix of d x d blocks

    Phi_{i,j} = C_i Lambda_i Lambda_{i-1} ... Lambda_{j+1} B_j   (j < i),   Phi_{i,i} = C_i B_i + D_i

(:func:`dsf_matrix`; :func:`dsf_recurrence` runs the recurrence). The models, each derived here
from its standard equations and checked equal to layerlab's block (tests, card
``dsf-models-equal-their-implementations``):

- separable attention ``y_i = sum_{j<=i} phi(q_i)^T psi(k_j) v_j / eta_i`` with feature maps
  ``phi, psi: R^m -> R^n``, ``v_j = W_V u_j`` (:func:`separable_attention`): the state is the
  ``n x d_v`` matrix ``S_i = sum_{j<=i} psi(k_j) v_j^T / eta_i`` (``N = n d_v``). With the
  normalization in the recurrence (``normalization="state"``)
  ``Lambda_i = (eta_{i-1} / eta_i) I``, ``B_i = (psi(k_i) (x) W_V) / eta_i``, ``C_i = I (x) phi(q_i)^T``;
  with it at the output (``"output"``) ``Lambda_i = I``, ``B_i = psi(k_i) (x) W_V``,
  ``C_i = (I (x) phi(q_i)^T) / eta_i``. Both give the same ``Phi``.
  Linear attention (Katharopoulos et al.): ``phi = psi = elu + 1``,
  ``eta_i = phi(q_i)^T sum_{j<=i} psi(k_j)`` (+ eps); its state expansion is the head dimension.
- softmax attention: ``exp(q^T k / sqrt(d))`` is separable only with an infinite feature map
  (the paper's point: softmax attention is a DSF with ``N -> infinity``).
  :func:`exp_feature_map` truncates its Taylor series at order ``p`` (monomials
  ``x^alpha / sqrt(alpha!) d^{-|alpha|/4}``, ``|alpha| <= p``, so ``phi(q)^T phi(k) =
  sum_{m<=p} (q^T k / sqrt d)^m / m!``); the error falls as ``p`` grows. On a sequence of ``L``
  tokens the exact system is :func:`softmax_attention_kv`: the state holds the ``L`` values
  (``N = L d_v``, it grows with the sequence), ``Lambda_i = I``, ``B_i`` writes ``v_i`` into slot
  ``i``, ``C_i`` reads the slots with the softmax weights of query ``i``.
- S6 (Mamba's selective SSM), per channel ``c`` and state index ``s`` (:func:`selective_ssm`):
  ``Lambda_i = diag(exp(Delta_{i,c} A_{c,s}))``, ``B_i = diag_c(Delta_{i,c}) (x) b_i``,
  ``C_i = I (x) c_i^T``, ``D_i = diag(D)`` (Mamba's Euler ``Bbar``; ``N = E N_s``).
- the RG-LRU (Griffin's gated RNN, :func:`rglru`): ``n = 1``, ``Lambda_i = diag(a_i)``,
  ``B_i = diag(m_i (.) i_i)``, ``C_i = I`` with the gates computed from ``u_i`` only.

S6 against normalized linear attention (:func:`s6_as_normalized_attention`). The paper
compares the two in the DSF and gives conditions under which they coincide. Its own statement
could not be retrieved here (the search tools returned the abstract, figure captions and the
authors' code, not Sec. 4); the condition implemented and tested is derived from the two DSF
forms above. Unrolling one S6 channel,

    y_{i,c} = sum_{j<=i} c_i^T diag(exp(A_c sum_{k=j+1}^{i} Delta_{k,c})) b_j Delta_{j,c} u_{j,c}.

If ``A_{c,s} = a_c`` for every state index ``s`` (one scalar transition per channel, as in
Mamba-2/SSD), ``exp(a_c sum_{k=j+1}^i Delta_{k,c}) = eta_{j,c} / eta_{i,c}`` with
``eta_{i,c} = exp(-a_c sum_{k<=i} Delta_{k,c})``, so the channel is exactly normalized linear
attention in the recurrent form ``Lambda_i = eta_{i-1}/eta_i``:

    y_{i,c} = (1 / eta_{i,c}) sum_{j<=i} phi(q_i)^T psi_c(k_j) u_{j,c},
    phi(q_i) = c_i,   psi_c(k_j) = Delta_{j,c} eta_{j,c} b_j,

and with ``Delta`` shared by the channels (and ``a_c = a``) one attention head over all channels.
Conversely a normalized linear attention is an S6 with ``a = -1``, ``Delta_i = log(eta_i /
eta_{i-1})`` and ``b_i = psi(k_i) / (Delta_i eta_i)`` exactly when ``eta`` increases strictly
(``Delta > 0``: S6's transitions lie in (0, 1)). With ``A`` varying over the state index (Mamba's
S4D-Real init ``A_{c,s} = -s``) no such scalar normalization exists and the mapping fails
(tested).

Everything runs in the inputs' dtype (float64 in the tests: DSF forms equal the blocks to 1e-10).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import ConfigError, ShapeError

__all__ = ["DSF", "combine_heads", "dsf_apply", "dsf_matrix", "dsf_recurrence", "exp_feature_map",
           "linear_attention_system", "mamba_system", "normalized_attention", "normalized_attention_as_s6",
           "attention_system", "rglru",
           "rglru_system", "s6_as_normalized_attention", "selective_ssm", "separable_attention",
           "softmax_attention_kv", "s6_attention_matrix"]


@dataclass(frozen=True)
class DSF:
    """A DSF over a batch: ``lam`` (..., L, N) the diagonals of ``Lambda_i``; ``B`` (..., L, N, d_in);
    ``C`` (..., L, d_out, N); ``D`` (..., L, d_out, d_in) or None."""

    lam: Tensor
    B: Tensor
    C: Tensor
    D: Tensor | None = None

    def __post_init__(self) -> None:
        L, N = self.lam.shape[-2:]
        if self.B.shape[-3:-1] != (L, N) or self.C.shape[-3] != L or self.C.shape[-1] != N:
            raise ShapeError(f"DSF needs lam (..., L, N), B (..., L, N, d_in), C (..., L, d_out, N); got "
                             f"{tuple(self.lam.shape)}, {tuple(self.B.shape)}, {tuple(self.C.shape)}")
        if self.D is not None and self.D.shape[-3:] != (L, self.C.shape[-2], self.B.shape[-1]):
            raise ShapeError(f"DSF: D must be (..., L, d_out, d_in) = (..., {L}, {self.C.shape[-2]}, "
                             f"{self.B.shape[-1]}); got {tuple(self.D.shape)}")

    @property
    def state_size(self) -> int:
        return int(self.lam.shape[-1])


def dsf_recurrence(system: DSF, u: Tensor) -> Tensor:
    """``h_i = Lambda_i h_{i-1} + B_i u_i``, ``y_i = C_i h_i + D_i u_i`` token by token; ``u`` (..., L, d_in)."""
    if u.shape[-2:] != (system.lam.shape[-2], system.B.shape[-1]):
        raise ShapeError(f"dsf_recurrence: u must be (..., L, d_in) = (..., {system.lam.shape[-2]}, "
                         f"{system.B.shape[-1]}); got {tuple(u.shape)}")
    h = torch.zeros(*system.lam.shape[:-2], system.lam.shape[-1], dtype=u.dtype, device=u.device)
    ys = []
    for i in range(u.shape[-2]):
        h = system.lam[..., i, :] * h + (system.B[..., i, :, :] @ u[..., i, :, None])[..., 0]
        y = (system.C[..., i, :, :] @ h[..., None])[..., 0]
        if system.D is not None:
            y = y + (system.D[..., i, :, :] @ u[..., i, :, None])[..., 0]
        ys.append(y)
    return torch.stack(ys, dim=-2)


def dsf_matrix(system: DSF) -> Tensor:
    """The materialised ``Phi`` (..., L, L, d_out, d_in): ``Phi_{i,j} = C_i Lambda_i..Lambda_{j+1} B_j``
    for ``j <= i`` (plus ``D_i`` on the diagonal), zero above it."""
    lam, B, C = system.lam, system.B, system.C
    L = lam.shape[-2]
    batch = lam.shape[:-2]
    phi = torch.zeros(*batch, L, L, C.shape[-2], B.shape[-1], dtype=B.dtype, device=B.device)
    for j in range(L):
        transition = torch.ones_like(lam[..., j, :])  # Lambda_i ... Lambda_{j+1}, the empty product at i = j
        for i in range(j, L):
            if i > j:
                transition = transition * lam[..., i, :]
            phi[..., i, j, :, :] = C[..., i, :, :] @ (transition[..., :, None] * B[..., j, :, :])
    if system.D is not None:
        idx = torch.arange(L)
        phi[..., idx, idx, :, :] = phi[..., idx, idx, :, :] + system.D
    return phi


def dsf_apply(phi: Tensor, u: Tensor) -> Tensor:
    """``y_i = sum_j Phi_{i,j} u_j``: ``phi`` (..., L, L, d_out, d_in), ``u`` (..., L, d_in)."""
    return torch.einsum("...ijab,...jb->...ia", phi, u)


# --- attention -------------------------------------------------------------------------------
def separable_attention(phi_q: Tensor, psi_k: Tensor, w_v: Tensor, eta: Tensor | None = None, *,
                        normalization: str = "state") -> DSF:
    """DSF of ``y_i = sum_{j<=i} phi_q[i]^T psi_k[j] (W_V u_j) / eta_i`` (one head).

    ``phi_q, psi_k`` (..., L, n), ``w_v`` (d_v, d_in), ``eta`` (..., L) (None: no normalization).
    State index ``(a, c)`` -> ``a d_v + c`` of ``S = sum psi(k) v^T / eta`` (n x d_v)."""
    if phi_q.shape != psi_k.shape or w_v.dim() != 2:
        raise ShapeError(f"separable_attention: phi_q and psi_k must share a shape (..., L, n) and W_V be "
                         f"(d_v, d_in); got {tuple(phi_q.shape)}, {tuple(psi_k.shape)}, {tuple(w_v.shape)}")
    if normalization not in ("state", "output"):
        raise ConfigError(f"separable_attention: normalization is 'state' (Lambda_i = eta_(i-1)/eta_i) or "
                          f"'output' (C_i / eta_i); got {normalization!r}")
    L, n = phi_q.shape[-2:]
    d_v, d_in = w_v.shape
    eye = torch.eye(d_v, dtype=w_v.dtype, device=w_v.device)
    B = (psi_k[..., :, :, None, None] * w_v).reshape(*psi_k.shape[:-1], n * d_v, d_in)  # psi(k_i) (x) W_V
    C = (eye[:, None, :] * phi_q[..., :, None, :, None]).reshape(*phi_q.shape[:-1], d_v, n * d_v)  # I (x) phi^T
    lam = torch.ones(*phi_q.shape[:-1], n * d_v, dtype=B.dtype, device=B.device)
    if eta is not None:
        if eta.shape != phi_q.shape[:-1]:
            raise ShapeError(f"separable_attention: eta must be (..., L) = {tuple(phi_q.shape[:-1])}; got {tuple(eta.shape)}")
        if normalization == "state":
            previous = torch.cat((torch.ones_like(eta[..., :1]), eta[..., :-1]), dim=-1)  # h_{-1} = 0: Lambda_0 unused
            lam = lam * (previous / eta)[..., None]
            B = B / eta[..., None, None]
        else:
            C = C / eta[..., None, None]
    return DSF(lam, B, C)


def combine_heads(heads: list[DSF], w_o: Tensor) -> DSF:
    """One DSF for ``y = W_O concat(head outputs)``: the heads' states side by side, ``C = W_O[:, head] C_head``."""
    sizes = [h.C.shape[-2] for h in heads]
    if w_o.shape[-1] != sum(sizes):
        raise ShapeError(f"combine_heads: W_O has {w_o.shape[-1]} input columns for head outputs of sizes {sizes}")
    cols = torch.split(w_o, sizes, dim=-1)
    return DSF(torch.cat([h.lam for h in heads], -1), torch.cat([h.B for h in heads], -2),
               torch.cat([w @ h.C for w, h in zip(cols, heads)], -1))


def exp_feature_map(x: Tensor, order: int) -> Tensor:
    """Taylor features of the softmax kernel: ``phi(q)^T phi(k) = sum_{m<=order} (q^T k / sqrt(d))^m / m!``.

    ``x`` (..., d) -> (..., C(order + d, d)): monomials ``x^alpha / sqrt(alpha!)`` scaled by
    ``d^{-|alpha|/4}``, ``|alpha| <= order`` (``order`` even keeps every kernel value positive)."""
    if int(order) != order or order < 0:
        raise ConfigError(f"exp_feature_map: order must be an integer >= 0; got {order!r}")
    d = x.shape[-1]
    feats = [torch.ones_like(x[..., 0])]
    for m in range(1, int(order) + 1):
        for combo in itertools.combinations_with_replacement(range(d), m):
            counts = [combo.count(j) for j in set(combo)]
            scale = d ** (-m / 4) / math.sqrt(math.prod(math.factorial(c) for c in counts))
            feats.append(scale * torch.prod(x[..., list(combo)], dim=-1))
    return torch.stack(feats, dim=-1)


def softmax_attention_kv(q: Tensor, k: Tensor, w_v: Tensor) -> DSF:
    """The exact DSF of causal softmax attention on ``L`` tokens: state = the ``L`` value slots
    (``N = L d_v``), ``Lambda_i = I``, ``B_i = e_i (x) W_V``, ``C_i = softmax_i (x) I``. ``q, k`` (..., L, d_h)."""
    L, d_h = q.shape[-2:]
    d_v, d_in = w_v.shape
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_h)
    future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)  # (..., L, L)
    eye_l = torch.eye(L, dtype=w_v.dtype, device=w_v.device)
    eye_v = torch.eye(d_v, dtype=w_v.dtype, device=w_v.device)
    B = (eye_l[:, :, None, None] * w_v).reshape(L, L * d_v, d_in).expand(*q.shape[:-2], L, L * d_v, d_in)
    C = (eye_v[None, :, None, :] * weights[..., :, None, :, None]).reshape(*q.shape[:-2], L, d_v, L * d_v)
    lam = torch.ones(*q.shape[:-2], L, L * d_v, dtype=w_v.dtype, device=w_v.device)
    return DSF(lam, B, C)


def normalized_attention(phi_q: Tensor, psi_k: Tensor, v: Tensor, eta: Tensor) -> Tensor:
    """Reference: ``y_i = sum_{j<=i} phi_q[i]^T psi_k[j] v_j / eta_i`` (quadratic form). ``psi_k`` may carry
    a channel axis: (..., L, c, n) with ``v`` (..., L, c) and ``eta`` (..., L, c) (one normalization per channel)."""
    L = phi_q.shape[-2]
    mask = torch.ones(L, L, dtype=torch.bool, device=phi_q.device).tril()
    if psi_k.dim() == phi_q.dim():
        scores = (phi_q @ psi_k.transpose(-2, -1)).masked_fill(~mask, 0.0)
        return (scores @ v) / eta[..., None]
    scores = torch.einsum("...in,...jcn->...cij", phi_q, psi_k).masked_fill(~mask, 0.0)
    return torch.einsum("...cij,...jc->...ic", scores, v) / eta


def _heads_qkv(mixer: Any, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-head ``q, k`` (B, h, L, d_h) projections of a fused ``w_qkv`` mixer, its ``W_V`` per head
    (h, d_h, d_model) and ``W_O`` (d_model, d_model); the projections must have no bias."""
    if getattr(mixer.w_qkv, "bias", None) is not None or getattr(mixer.w_o, "bias", None) is not None:
        raise ConfigError("the DSF of attention needs bias-free projections (a bias makes v_i affine in u_i); "
                          "build the mixer with bias=False")
    h, d_h, D = mixer.n_heads, mixer.d_head, mixer.d_model
    w = mixer.w_qkv.weight
    w_q, w_k, w_v = w[:D].view(h, d_h, D), w[D:2 * D].view(h, d_h, D), w[2 * D:].view(h, d_h, D)
    q = torch.einsum("hed,bld->bhle", w_q, x)
    k = torch.einsum("hed,bld->bhle", w_k, x)
    return q, k, w_v, mixer.w_o.weight


def attention_system(mixer: Any, x: Tensor, *, order: int | None = None) -> DSF:
    """DSF of a causal softmax attention mixer (``n_heads``, ``d_head``, fused ``w_qkv``, ``w_o``,
    no rotary positions) on ``x`` (B, L, D): exact (KV slots) or, with ``order``, the Taylor-feature
    separable form of that order (state expansion ``C(order + d_h, d_h)``)."""
    if getattr(mixer, "rope", False):
        raise ConfigError("attention_system: rotary positions make q_i, k_j position-dependent; build with rope=False")
    q, k, w_v, w_o = _heads_qkv(mixer, x)
    heads = []
    for i in range(mixer.n_heads):
        if order is None:
            heads.append(softmax_attention_kv(q[:, i], k[:, i], w_v[i]))
        else:
            fq, fk = exp_feature_map(q[:, i], order), exp_feature_map(k[:, i], order)
            eta = (fq * torch.cumsum(fk, dim=-2)).sum(-1)
            heads.append(separable_attention(fq, fk, w_v[i], eta))
    return combine_heads(heads, w_o)


def linear_attention_system(mixer: Any, x: Tensor, *, normalization: str = "state") -> DSF:
    """DSF of a linear attention mixer with feature map ``elu + 1`` (``n_heads``, ``d_head``, fused
    ``w_qkv``, ``w_o``, ``normalize``, ``eps``) on ``x`` (B, L, D)."""
    q, k, w_v, w_o = _heads_qkv(mixer, x)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    heads = []
    for i in range(mixer.n_heads):
        eta = (fq[:, i] * torch.cumsum(fk[:, i], dim=-2)).sum(-1) + mixer.eps if mixer.normalize else None
        heads.append(separable_attention(fq[:, i], fk[:, i], w_v[i], eta, normalization=normalization))
    return combine_heads(heads, w_o)


# --- selective SSM (S6) ------------------------------------------------------------------------
def selective_ssm(delta: Tensor, A: Tensor, b: Tensor, c: Tensor, D: Tensor | None = None, *,
                  transition: Tensor | None = None) -> DSF:
    """DSF of S6: ``delta`` (..., L, E), ``A`` (E, N_s), ``b, c`` (..., L, N_s), ``D`` (E,) or None.
    State index ``(channel, s)`` -> ``channel N_s + s``; ``transition`` (..., L, E, N_s) overrides
    ``exp(Delta A)`` (e.g. Mamba's negative-eigenvalue ``2 exp(Delta A) - 1``)."""
    E, Ns = A.shape
    if delta.shape[-1] != E or b.shape[-1] != Ns or c.shape != b.shape or delta.shape[:-1] != b.shape[:-1]:
        raise ShapeError(f"selective_ssm: need delta (..., L, E), A (E, N_s), b and c (..., L, N_s); got "
                         f"{tuple(delta.shape)}, {tuple(A.shape)}, {tuple(b.shape)}, {tuple(c.shape)}")
    lead = delta.shape[:-1]
    lam = torch.exp(delta[..., :, None] * A) if transition is None else transition
    eye = torch.eye(E, dtype=delta.dtype, device=delta.device)
    B = (eye[:, None, :] * (delta[..., :, None, None] * b[..., None, :, None])).reshape(*lead, E * Ns, E)
    C = (eye[:, :, None] * c[..., None, None, :]).reshape(*lead, E, E * Ns)
    Dm = None if D is None else torch.diag(D).expand(*lead, E, E)
    return DSF(lam.reshape(*lead, E * Ns), B, C, Dm)


def mamba_system(mixer: Any, u: Tensor) -> tuple[DSF, Tensor, Tensor]:
    """The S6 of a Mamba mixer (``in_proj``, ``conv``, ``selection``, ``transition``, ``A_log``, ``D``,
    ``out_proj``) on ``u`` (B, L, D): ``(system, x, z)`` with ``x`` the SSM's input (after the causal
    conv and SiLU) and ``z`` the gate; the block's output is ``out_proj(y (.) SiLU(z))``, ``y = Phi x``."""
    x, z = mixer.in_proj(u).chunk(2, dim=-1)
    x = mixer.conv(x)
    delta, b, c = mixer.selection(x)
    A = -torch.exp(mixer.A_log)
    return selective_ssm(delta, A, b, c, mixer.D, transition=mixer.transition(delta)), x, z


def s6_attention_matrix(delta: Tensor, A: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """S6's weights on past inputs per channel: ``M[..., ch, i, j] = c_i^T exp(A_ch sum_{k=j+1}^i Delta_k,ch) b_j
    Delta_j,ch`` for ``j <= i`` (zero above): ``y_{i,ch} = sum_j M[ch, i, j] u_{j,ch}``."""
    cum = torch.cumsum(delta, dim=-2)  # (..., L, E)
    gap = cum[..., :, None, :] - cum[..., None, :, :]  # (..., i, j, E): sum_{k=j+1}^{i} Delta_k
    L = delta.shape[-2]
    mask = torch.ones(L, L, dtype=torch.bool, device=delta.device).tril()
    gap = gap.masked_fill(~mask[..., None], 0.0)
    decay = torch.exp(gap[..., None] * A)  # (..., i, j, E, N_s)
    M = torch.einsum("...is,...ijes,...js,...je->...eij", c, decay, b, delta)
    return M.masked_fill(~mask, 0.0)


def s6_as_normalized_attention(delta: Tensor, A: Tensor, b: Tensor, c: Tensor, *,
                               atol: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """``(phi_q, psi_k, eta)`` with S6's output ``y_{i,ch} = (1/eta_{i,ch}) sum_{j<=i} phi_q[i]^T psi_k[j, ch] u_{j,ch}``.

    Needs the condition of the module docstring: ``A[ch, s] = a_ch`` for every state index ``s``
    (within ``atol``); otherwise a ConfigError. ``phi_q = c`` (..., L, N_s), ``psi_k`` (..., L, E, N_s)
    ``= Delta eta b``, ``eta = exp(-a sum_{k<=i} Delta_k)`` (..., L, E)."""
    spread = (A.max(dim=-1).values - A.min(dim=-1).values).abs().max().detach()
    if float(spread) > atol:
        raise ConfigError(f"S6 equals a normalized linear attention only with one transition rate per channel "
                          f"(A[c, s] = a_c for all s); here A varies over the state index by {float(spread):.3g}. "
                          "Tie A (e.g. A_log constant along the state axis), or compare s6_attention_matrix directly")
    a = A[..., 0]  # (E,)
    eta = torch.exp(-torch.cumsum(delta, dim=-2) * a)  # (..., L, E)
    psi = (delta * eta)[..., :, :, None] * b[..., :, None, :]
    return c, psi, eta


def normalized_attention_as_s6(eta: Tensor, psi_k: Tensor) -> tuple[Tensor, Tensor]:
    """The converse map for one head: ``Delta_i = log(eta_i / eta_{i-1})`` (``eta_{-1} = 1``) and
    ``b_i = psi_k[i] / (Delta_i eta_i)`` with ``a = -1``; ``eta`` (..., L) must increase strictly from > 1."""
    previous = torch.cat((torch.ones_like(eta[..., :1]), eta[..., :-1]), dim=-1)
    if bool((eta <= previous).any()):
        raise ConfigError("normalized_attention_as_s6: S6's transitions exp(-Delta) lie in (0, 1), so eta must "
                          "increase strictly (from above 1); this normalization does not")
    delta = torch.log(eta / previous)
    return delta, psi_k / (delta * eta)[..., None]


# --- RG-LRU --------------------------------------------------------------------------------------
def rglru(a: Tensor, gain: Tensor) -> DSF:
    """DSF of a diagonal gated recurrence ``h_i = a_i (.) h_{i-1} + gain_i (.) u_i``, ``y_i = h_i`` (n = 1)."""
    if a.shape != gain.shape:
        raise ShapeError(f"rglru: a and gain must share a shape (..., L, N); got {tuple(a.shape)}, {tuple(gain.shape)}")
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return DSF(a, torch.diag_embed(gain), eye.expand(*a.shape[:-1], *eye.shape))


def rglru_system(mixer: Any, x: Tensor) -> tuple[DSF, Tensor, Tensor]:
    """The RG-LRU of a Hawk block (``w_g, w_in, _conv, w_a, w_x, lam, c, normalize_first, w_out``) on
    ``x`` (B, L, D): ``(system, v, gate)``; the block's output is ``w_out(gate (.) h)``, ``h = Phi v``.

    Gates (De et al. 2024, Eqs. 1-4): ``r_i = sigma(W_a v_i + b_a)``, ``i_i = sigma(W_x v_i + b_x)``,
    ``log a_i = -c r_i softplus(-Lambda)``, ``m_i = sqrt(1 - a_i^2)`` (``m_0 = 1`` unless ``normalize_first``)."""
    gate = F.gelu(mixer.w_g(x))
    v = mixer._conv(mixer.w_in(x))
    r = torch.sigmoid(mixer.w_a(v))
    i = torch.sigmoid(mixer.w_x(v))
    log_a = -mixer.c * r * F.softplus(-mixer.lam)
    m = torch.sqrt(-torch.expm1(2 * log_a))
    if not mixer.normalize_first:
        m = torch.cat((torch.ones_like(m[..., :1, :]), m[..., 1:, :]), dim=-2)
    return rglru(torch.exp(log_a), m * i), v, gate
