"""Causal Grassmann mixing: local token pairs as 2-planes, encoded by Plücker coordinates.

Zhang Chong, "Attention Is Not What You Need: Grassmann Flows as an Attention-Free Alternative
for Sequence Modeling", 2025, arXiv:2512.19428.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper, register
from ...kernels.plucker import plucker, plucker_mean_fused, plucker_mean_pairs  # noqa: F401  (plucker re-exported)
from .base import Mixer, State

GRASSMANN = Paper(
    "Attention Is Not What You Need: Grassmann Flows as an Attention-Free Alternative for Sequence Modeling",
    2025, "2512.19428",
)


@register("mixer", "grassmann", paper=GRASSMANN)
class CausalGrassmann(Mixer):
    r"""Causal Grassmann mixing layer: multi-scale local pairs of reduced token states, read as
    points of the Grassmannian Gr(2, r) through their Plücker coordinates, fused back by a gate.

    Paper: Zhang Chong, "Attention Is Not What You Need: Grassmann Flows as an
    Attention-Free Alternative for Sequence Modeling", 2025, arXiv:2512.19428 (the Causal
    Grassmann layer). The equations below follow the paper's four steps (reduce, pair, Plücker
    embed, gated fusion) as described in the paper and its reproductions; no official code.

    Equation, for the hidden states ``h_t`` (D) and the offsets ``δ`` in ``windows``::

        z_t        = W_red h_t + b_red                                   (D -> r)
        p_t^(δ)    = Plücker(z_t, z_{t-δ}),  p_ij = z_t,i z_{t-δ},j - z_t,j z_{t-δ},i   (i < j)
        p̂_t^(δ)    = p_t^(δ) / max(||p_t^(δ)||, eps)                    (if normalize)
        g_t        = mean_{δ : t-δ >= 0} (W_plu p̂_t^(δ) + b_plu)        (r(r-1)/2 -> D; 0 if no δ)
        α_t        = σ(W_gate [h_t; g_t] + b_gate)                        (2D -> D)
        y_t        = α_t ⊙ h_t + (1 - α_t) ⊙ g_t

    Causal by construction: position ``t`` pairs only with ``t - δ``, ``δ >= 1``.

    Shape: ``(B, L, D) -> (B, L, D)``.

    Modes:
        ``"fused"`` (default): the mean of the normalised pairs in a compiled loop on the CPU
        (:mod:`layerlab.kernels.plucker`; the vectorized form elsewhere and without ``normalize``).
        ``"vectorized"``: the pairs of all offsets at once (a gather of the shifted
        ``z``), averaged before the (linear) projection ``W_plu``.
        ``"reference"``: per position and per offset, each pair projected and then averaged,
        as written above.

    Recurrent: the layer only looks ``max(windows)`` tokens back, so ``step`` keeps the last
    ``max(windows)`` reduced states ``z`` and their validity flags: a fixed-size state.

    Initialization: not stated in the paper; all linear layers PyTorch's default
    (U(±fan_in^-1/2) weights and biases).

    Options: ``r`` (reduced dimension; the paper uses r = 32 at D = 256 — the default 16 keeps
    ``W_plu`` (r(r-1)/2 x D) affordable at the lab's widths), ``windows`` (the offsets δ; the
    paper's multi-scale set 1, 2, 4, 8, 12, 16), ``normalize`` (unit Plücker vectors), ``eps``,
    ``device``, ``dtype``.

    Differences from the paper: the paper's block applies LayerNorm and dropout after the
    mixing and wraps it with its own residual; here norms and residuals belong to the backbone,
    which adds ``y`` to its residual stream.
    """

    modes = ("fused", "vectorized", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        r: int = 16,
        windows: Sequence[int] = (1, 2, 4, 8, 12, 16),
        normalize: bool = True,
        eps: float = 1e-8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(r) < 2:
            raise ConfigError(f"grassmann: r must be >= 2 (a 2-plane needs room), got {r}")
        windows = tuple(windows) if not isinstance(windows, int) else (windows,)
        if not windows or any(not isinstance(w, int) or w < 1 for w in windows) or len(set(windows)) != len(windows):
            raise ConfigError(
                f"grassmann: windows lists distinct integer offsets >= 1 (e.g. [1, 2, 4, 8, 12, 16]); "
                f"got {list(windows)}"
            )
        if not eps > 0:
            raise ConfigError(f"grassmann: eps must be > 0, got {eps}")
        factory = {"device": device, "dtype": dtype}
        self.r, self.windows, self.normalize, self.eps = int(r), tuple(sorted(windows)), bool(normalize), float(eps)
        self.n_plucker = self.r * (self.r - 1) // 2
        self.w_red = nn.Linear(d_model, self.r, **factory)
        self.w_plu = nn.Linear(self.n_plucker, d_model, **factory)
        self.w_gate = nn.Linear(2 * d_model, d_model, **factory)

    def _encode(self, z_t: Tensor, z_past: Tensor) -> Tensor:
        p = plucker(z_t, z_past)
        if self.normalize:
            p = p / p.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        return p

    def _fuse(self, h: Tensor, g: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.w_gate(torch.cat((h, g), dim=-1)))
        return alpha * h + (1 - alpha) * g

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        z = self.w_red(x)  # (B, L, r)
        if mode in ("fused", "vectorized"):
            if mode == "fused" and self.normalize:
                mean_p, count = plucker_mean_fused(z, self.windows, self.eps)
            else:
                mean_p, count = plucker_mean_pairs(z, self.windows, self.eps, self.normalize)
            g = F.linear(mean_p, self.w_plu.weight) + (count > 0).to(x.dtype)[:, None] * self.w_plu.bias
        else:
            gs = []
            for t in range(L):
                terms = [self.w_plu(self._encode(z[:, t], z[:, t - d])) for d in self.windows if t - d >= 0]
                gs.append(torch.stack(terms).mean(dim=0) if terms else x.new_zeros(B, D))
            g = torch.stack(gs, dim=1)
        return self._fuse(x, g)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        m = self.windows[-1]
        history = torch.zeros(batch_size, m, self.r, **f)  # z_{t-m} .. z_{t-1}
        valid = torch.zeros(batch_size, m, dtype=torch.bool, device=f["device"])
        return history, valid

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        history, valid = state
        m = self.windows[-1]
        z_t = self.w_red(x_t)
        idx = [m - d for d in self.windows]  # z_{t-δ} sits at index m - δ
        p = self._encode(z_t.unsqueeze(1), history[:, idx])  # (B, W, P)
        ok = valid[:, idx].to(x_t.dtype)  # (B, W)
        count = ok.sum(dim=1, keepdim=True)
        mean_p = (p * ok[..., None]).sum(dim=1) / count.clamp_min(1)
        g = F.linear(mean_p, self.w_plu.weight) + (count > 0).to(x_t.dtype) * self.w_plu.bias
        history = torch.cat((history[:, 1:], z_t.unsqueeze(1)), dim=1)
        valid = torch.cat((valid[:, 1:], torch.ones_like(valid[:, :1])), dim=1)
        return self._fuse(x_t, g), (history, valid)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, r={self.r}, windows={self.windows}, normalize={self.normalize}"
