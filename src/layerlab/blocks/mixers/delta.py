"""Delta-rule mixers: DeltaNet, Gated DeltaNet and DeltaProduct, with optional negative eigenvalues.

All three keep a matrix memory per head, written by online regression steps. In the papers'
notation ``S_t in R^{d_v x d_k}``; this module (like ``layerlab.kernels``) stores the transpose
``M_t = S_t^T in R^{d_k x d_v}``, so ``S_t (I - b k k^T)`` reads ``(I - b k k^T) M_t`` here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...kernels import delta_product, delta_rule, gated_delta_rule
from ...errors import ConfigError
from ...registry import Paper, register
from .._common import causal_depthwise_conv, wide_dtype
from ..norms import RMSNorm
from .base import MultiHeadMixer, State
from .linear_attention import check_chunk_size, check_heads



def l2_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(|x|^2 + eps) over the last dim (smooth at 0; |x| = 1 up to eps / (2 |x|^2))."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


class _DeltaMixer(MultiHeadMixer):
    """Shared body of the delta-rule mixers; the registered subclasses fix the variant.

    Per token ``x_t``, head ``h`` and Householder step ``j = 1..n_h`` (``n_h = 1`` except
    DeltaProduct)::

        [q~, k~, v~] = SiLU(ShortConv([W_q x, W_k x, W_v x]))      (depthwise, causal, per channel)
        q_t = q~_t / |q~_t|,   k_{t,j} = k~_{t,j} / |k~_{t,j}|,   v_{t,j} = v~_{t,j}
        beta_{t,j} = sigmoid(w_beta_j . x_t)          (2 sigmoid(.) with negative_eigenvalues)
        alpha_t = exp(g_t),  g_t = -exp(A_log) softplus(w_a . x_t + dt_bias)        (gated only)
        M <- alpha_t M;  for j: M <- (I - beta_{t,j} k_{t,j} k_{t,j}^T) M + beta_{t,j} k_{t,j} v_{t,j}^T
        o_t = M^T q_t
        y_t = W_o Concat_h(RMSNorm(o_t) [* SiLU(W_g x_t) if gated])
    """

    modes = ("fused", "chunk", "reference")
    recurrent = True
    _name = "delta"
    _product = False  # run the DeltaProduct kernel (keys/values/betas with an n_h axis)

    def _setup(self, d_model: int, *, n_heads: int, conv_size: int, negative_eigenvalues: bool,
               n_householder: int, gated: bool, chunk_size: int, norm_eps: float,
               device: torch.device | str | None, dtype: torch.dtype | None) -> None:
        name = self._name
        check_heads(name, d_model, n_heads)
        check_chunk_size(name, chunk_size)
        if isinstance(conv_size, bool) or int(conv_size) != conv_size or conv_size < 0:
            raise ConfigError(f"{name}: conv_size is the short convolution's kernel size, an integer >= 0 "
                              f"(0 disables it; the papers use 4); got {conv_size!r}")
        if isinstance(n_householder, bool) or int(n_householder) != n_householder or n_householder < 1:
            raise ConfigError(f"{name}: n_householder (n_h, Householder steps per token) must be an integer "
                              f">= 1 (1 is DeltaNet); got {n_householder!r}")
        if not norm_eps >= 0:
            raise ConfigError(f"{name}: norm_eps must be >= 0 (e.g. 1e-5), got {norm_eps}")
        factory = {"device": device, "dtype": dtype}
        self.n_heads = H = int(n_heads)
        self.d_head = d = d_model // H
        self.n_householder = n = int(n_householder)
        self.conv_size = int(conv_size)
        self.negative_eigenvalues = bool(negative_eigenvalues)
        self.gated = bool(gated)
        self.chunk_size = int(chunk_size)
        self.q_proj = nn.Linear(d_model, H * d, bias=False, **factory)
        self.k_proj = nn.Linear(d_model, n * H * d, bias=False, **factory)
        self.v_proj = nn.Linear(d_model, n * H * d, bias=False, **factory)
        self.b_proj = nn.Linear(d_model, n * H, bias=False, **factory)
        self.conv_channels = C = H * d + 2 * n * H * d
        self.conv = (nn.Conv1d(C, C, self.conv_size, groups=C, bias=False, **factory)
                     if self.conv_size > 0 else None)
        if self.gated:
            self.a_proj = nn.Linear(d_model, H, bias=False, **factory)
            self.A_log = nn.Parameter(torch.empty(H, **factory))
            self.dt_bias = nn.Parameter(torch.empty(H, **factory))
            self.g_proj = nn.Linear(d_model, H * d, bias=False, **factory)
        self.o_norm = RMSNorm(d, eps=norm_eps, **factory)
        self.o_proj = nn.Linear(H * d, d_model, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        linears = [self.q_proj, self.k_proj, self.v_proj, self.b_proj, self.o_proj]
        if self.gated:
            linears += [self.a_proj, self.g_proj]
        for linear in linears:
            nn.init.normal_(linear.weight, mean=0.0, std=self.d_model ** -0.5)
        if self.conv is not None:
            self.conv.reset_parameters()
        if self.gated:
            with torch.no_grad():  # the authors' release: A ~ U(0, 16], dt ~ log-U[1e-3, 1e-1]
                A = 16.0 * (1.0 - torch.rand(self.A_log.shape, dtype=torch.float64))  # (0, 16]: no log 0
                self.A_log.copy_(A.log())
                u = torch.rand_like(self.dt_bias)
                dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp_min(1e-4)
                self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        self.o_norm.reset_parameters()

    # --- the recurrence's inputs ---------------------------------------------------------
    def _project(self, x: Tensor) -> Tensor:
        """(..., D) -> the pre-convolution channels [W_q x, W_k x, W_v x] (..., C)."""
        return torch.cat((self.q_proj(x), self.k_proj(x), self.v_proj(x)), dim=-1)

    def _heads(self, c: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Post-convolution channels c (B, L, C) and the input x (B, L, D) -> q (B, H, L, d),
        k, v (B, H, L, n_h, d), beta (B, H, L, n_h), g (B, H, L) or None; float32 or wider."""
        B, L, _ = c.shape
        H, d, n = self.n_heads, self.d_head, self.n_householder
        wide = wide_dtype(c.dtype)
        c = F.silu(c.to(wide))
        q, k, v = c.split([H * d, n * H * d, n * H * d], dim=-1)
        q = l2_normalize(q.view(B, L, H, d)).transpose(1, 2)
        k = l2_normalize(k.view(B, L, H, n, d)).transpose(1, 2)
        v = v.view(B, L, H, n, d).transpose(1, 2)
        beta = torch.sigmoid(self.b_proj(x).to(wide)).view(B, L, H, n).transpose(1, 2)
        if self.negative_eigenvalues:
            beta = 2.0 * beta
        g = None
        if self.gated:
            dt = F.softplus(self.a_proj(x).to(wide) + self.dt_bias.to(wide))
            g = (-torch.exp(self.A_log.to(wide)) * dt).transpose(1, 2)
        return q, k, v, beta, g

    def _short_conv(self, u: Tensor) -> Tensor:
        """Causal depthwise convolution over the sequence: (B, L, C) -> (B, L, C)."""
        if self.conv is None:
            return u
        return causal_depthwise_conv(u, self.conv.weight[:, 0, :])

    def recurrence_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """The per-head tensors the recurrence reads for a sequence x (B, L, D): q (B, H, L, d),
        k, v (B, H, L, n_h, d), beta (B, H, L, n_h), log decay g (B, H, L) (None if not gated)."""
        return self._heads(self._short_conv(self._project(x)), x)

    # --- forward ---------------------------------------------------------------------------
    def _kernel(self, q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor | None, mode: str) -> Tensor:
        opts = {"mode": "recurrent" if mode == "reference" else mode, "chunk_size": self.chunk_size}
        if self._product:
            out, _ = delta_product(q, k, v, beta, g=g, **opts)
        elif g is not None:
            out, _ = gated_delta_rule(q, k[..., 0, :], v[..., 0, :], beta[..., 0], g, **opts)
        else:
            out, _ = delta_rule(q, k[..., 0, :], v[..., 0, :], beta[..., 0], **opts)
        return out

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Head outputs o (B, L, H, d) -> W_o Concat_h(RMSNorm(o) [* SiLU(W_g x)]) (B, L, D)."""
        o = self.o_norm(o)
        if self.gated:
            o = o * F.silu(self.g_proj(x).to(o.dtype)).view(o.shape)
        return self.o_proj(o.flatten(-2).to(x.dtype))

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        q, k, v, beta, g = self.recurrence_inputs(x)
        out = self._kernel(q, k, v, beta, g, mode)  # (B, H, L, d)
        return self._output(out.transpose(1, 2), x)

    # --- token by token --------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """``(M, conv_buffer)``: the memory M (B, H, d_k, d_v) in float32 or wider, and the last
        ``conv_size - 1`` pre-convolution inputs (B, conv_size - 1, C) (absent if conv_size <= 1)."""
        f = self._factory(device, dtype)
        wide = wide_dtype(f["dtype"])
        M = torch.zeros(batch_size, self.n_heads, self.d_head, self.d_head, device=f["device"], dtype=wide)
        if self.conv_size <= 1:
            return (M,)
        return (M, torch.zeros(batch_size, self.conv_size - 1, self.conv_channels, **f))

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        M = state[0]
        u = self._project(x_t)  # (B, C)
        if self.conv is None:
            c, new_state = u, ()
        else:
            window = torch.cat((state[1], u[:, None]), dim=1) if self.conv_size > 1 else u[:, None]
            c = (window * self.conv.weight[:, 0, :].T).sum(1)  # oldest first, as in the convolution
            new_state = (window[:, 1:],) if self.conv_size > 1 else ()
        q, k, v, beta, g = (None if t is None else t[:, :, 0] for t in self._heads(c[:, None], x_t[:, None]))
        if g is not None:
            M = torch.exp(g)[..., None, None] * M  # alpha_t M
        for j in range(self.n_householder):  # M <- (I - b k k^T) M + b k v^T = M + k (b (v - M^T k))^T
            k_j, v_j, b_j = k[:, :, j], v[:, :, j], beta[:, :, j]
            u_j = b_j[..., None] * (v_j - (k_j[..., :, None] * M).sum(-2))
            M = M + k_j[..., :, None] * u_j[..., None, :]
        o = (q[..., :, None] * M).sum(-2)  # M^T q_t, (B, H, d)
        return self._output(o, x_t), (M, *new_state)

    def extra_repr(self) -> str:
        extra = f", n_householder={self.n_householder}" if self._product else ""
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, conv_size={self.conv_size}, "
                f"negative_eigenvalues={self.negative_eigenvalues}, gated={self.gated}{extra}, "
                f"modes={self.modes}")


@register("mixer", "deltanet",
          paper=Paper("Parallelizing Linear Transformers with the Delta Rule over Sequence Length", 2024, "2406.06484"))
class DeltaNet(_DeltaMixer):
    r"""DeltaNet: linear attention whose memory is written by the delta rule.

    Paper: Yang, Wang, Zhang, Shen & Kim, "Parallelizing Linear Transformers with the Delta Rule
    over Sequence Length", 2024, arXiv:2406.06484 (the delta rule: Schlag et al. 2021,
    arXiv:2102.11174). Negative eigenvalues: Grazzi et al., "Unlocking State-Tracking in Linear
    RNNs Through Negative Eigenvalues", 2024, arXiv:2411.12537.

    Equation, per head (``d = d_model / n_heads``), in the paper's notation::

        q_t = L2(SiLU(Conv(W_q x)_t)),  k_t = L2(SiLU(Conv(W_k x)_t)),  v_t = SiLU(Conv(W_v x)_t)
        beta_t = sigmoid(w_beta . x_t)                      ((0, 1); 2 sigmoid in (0, 2) with
                                                              negative_eigenvalues)
        S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,    o_t = S_t q_t
        y_t = W_o Concat_h(RMSNorm(o_t))

    ``Conv`` is a causal depthwise (per-channel) convolution of ``conv_size`` taps over the
    sequence, ``L2(u) = u / sqrt(|u|^2 + 1e-6)``. The architecture is the paper's modernized
    DeltaNet block (with the ablation that motivates each part): L2-normalized SiLU features for
    q and k instead of the original 1+ELU and sum normalization, short convolutions on q, k, v,
    an output RMSNorm per head (weight shared across heads) before ``W_o``; no output gate.
    With unit keys the transition ``I - beta_t k_t k_t^T`` has eigenvalues 1 (multiplicity
    d - 1) and ``1 - beta_t``: in (0, 1) by default, in (-1, 1) with ``negative_eigenvalues``
    (a reflection at beta = 2).

    Shape: ``(B, L, D) -> (B, L, D)``; output ``t`` depends on inputs ``<= t``.

    Modes: ``"fused"`` (default): the kernel's compiled recurrence on the CPU (the chunk form
    elsewhere); ``"chunk"``: the kernel's chunked UT-transform form; ``"reference"``: the
    kernel's token-by-token recurrence. ``step`` keeps ``(M, conv_buffer)``: the memory
    ``M = S^T`` (B, H, d, d) and the last ``conv_size - 1`` projected inputs (B, conv_size - 1, 3 D);
    ``state_size = H d^2 + (conv_size - 1) 3 D``.

    Initialization: ``W_q, W_k, W_v, w_beta, W_o`` i.i.d. normal with std ``d_model^(-1/2)`` (fan-in,
    as ``attention``; no biases), convolution taps PyTorch's ``Conv1d`` default
    (U(-1/sqrt(conv_size), 1/sqrt(conv_size))), RMSNorm gain 1. At init ``beta_t`` is spread around
    1/2 (1 with ``negative_eigenvalues``).

    Options: ``n_heads``, ``conv_size`` (default 4; 0 removes the convolution),
    ``negative_eigenvalues``, ``chunk_size`` (kernel chunk), ``norm_eps`` (the output RMSNorm's
    eps), ``device``, ``dtype``.

    Differences from the paper: no ``1/sqrt(d)`` scaling of q (irrelevant: the output RMSNorm
    removes any scale of ``o_t`` up to its eps); the recurrence runs in float32 or wider and the
    output is cast back to the input dtype.
    """

    _name = "deltanet"

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        conv_size: int = 4,
        negative_eigenvalues: bool = False,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        self._setup(d_model, n_heads=n_heads, conv_size=conv_size, negative_eigenvalues=negative_eigenvalues,
                    n_householder=1, gated=False, chunk_size=chunk_size, norm_eps=norm_eps,
                    device=device, dtype=dtype)


@register("mixer", "gated_deltanet",
          paper=Paper("Gated Delta Networks: Improving Mamba2 with Delta Rule", 2024, "2412.06464"))
class GatedDeltaNet(_DeltaMixer):
    r"""Gated DeltaNet: the delta rule with a data-dependent decay of the whole memory.

    Paper: Yang, Kautz & Hatamizadeh, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
    2024, arXiv:2412.06464 (Eq. 10; block design Sec. 3.4, Fig. 1). Negative eigenvalues:
    Grazzi et al. 2024, arXiv:2411.12537.

    Equation, per head, in the paper's notation::

        q_t, k_t, v_t, beta_t as in DeltaNet (linear projection, short convolution, SiLU, L2 on q, k)
        alpha_t = exp(g_t),   g_t = -exp(A_log) softplus(w_a . x_t + dt_bias)       in (0, 1)
        S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T,   o_t = S_t q_t
        y_t = W_o Concat_h(RMSNorm(o_t) * SiLU(W_g x_t))

    The paper states ``alpha_t in (0, 1)`` from a linear projection; the parameterization of
    ``g_t`` is Mamba-2's (Dao & Gu 2024, arXiv:2405.21060: ``A = -exp(A_log)`` per head,
    ``Delta_t = softplus(. + dt_bias)``, ``alpha_t = exp(Delta_t A)``), as in the authors' release.
    The output is normalized and gated before ``W_o`` (following RetNet, as the paper says).
    Transition eigenvalues: ``alpha_t`` (multiplicity d - 1) and ``alpha_t (1 - beta_t)``, so in
    [0, 1] by default and in [-1, 1] with ``negative_eigenvalues``.

    Shape: ``(B, L, D) -> (B, L, D)``; causal. Modes and state: as DeltaNet (the decay adds no
    state).

    Initialization: projections (``W_q, W_k, W_v, w_beta, w_a, W_g, W_o``) normal with std
    ``d_model^(-1/2)``, no biases; ``A ~ U(0, 16]`` (``A_log = log A``) as in the authors'
    release (flash-linear-attention's ``GatedDeltaNet`` layer draws ``uniform_(0, 16)``; Mamba-2
    itself draws ``A`` in [1, 16]), so some heads start with almost no decay (``A`` near 0,
    ``alpha`` near 1: DeltaNet-like heads); the draw excludes 0, where ``log A`` is infinite;
    ``dt_bias = softplus^{-1}(dt)``, ``dt`` log-uniform in [1e-3, 1e-1] (floor 1e-4), so the decay
    at init is ``alpha ~ exp(-A dt)`` in about [0.2, 1); convolution PyTorch's default; RMSNorm gain 1.

    Weight decay skips ``A_log`` and ``dt_bias`` (``no_weight_decay``), as the authors' release
    marks them (``_no_weight_decay``).

    Options: as DeltaNet. Differences from the paper: as DeltaNet (no q scaling; float32 or wider
    recurrence); values have the keys' width ``d = d_model / n_heads`` (the authors' release
    widens values 2x; kept equal here so that every delta mixer's state is ``H d^2``).
    """

    _name = "gated_deltanet"
    no_weight_decay = ("A_log", "dt_bias")

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        conv_size: int = 4,
        negative_eigenvalues: bool = False,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        self._setup(d_model, n_heads=n_heads, conv_size=conv_size, negative_eigenvalues=negative_eigenvalues,
                    n_householder=1, gated=True, chunk_size=chunk_size, norm_eps=norm_eps,
                    device=device, dtype=dtype)


@register("mixer", "deltaproduct",
          paper=Paper("DeltaProduct: Improving State-Tracking in Linear RNNs via Householder Products", 2025,
                      "2502.10297"))
class DeltaProduct(_DeltaMixer):
    r"""DeltaProduct: ``n_h`` delta-rule steps per token, a product of Householder-like transitions.

    Paper: Siems, Carstensen, Zela, Hutter, Pontil & Grazzi, "DeltaProduct: Improving
    State-Tracking in Linear RNNs via Householder Products", 2025, arXiv:2502.10297. Negative
    eigenvalues: Grazzi et al. 2024, arXiv:2411.12537.

    Equation, per head, with ``n_h`` keys, values and betas per token (``j = 1..n_h``)::

        k_{t,j} = L2(SiLU(Conv(W_{k,j} x)_t)),  v_{t,j} = SiLU(Conv(W_{v,j} x)_t),
        beta_{t,j} = sigmoid(w_{beta,j} . x_t)   (2 sigmoid(.) with negative_eigenvalues)
        S_{t,0} = alpha_t S_{t-1}                               (alpha_t = 1 unless gated)
        S_{t,j} = S_{t,j-1} (I - beta_{t,j} k_{t,j} k_{t,j}^T) + beta_{t,j} v_{t,j} k_{t,j}^T
        S_t = S_{t,n_h},   o_t = S_t q_t,   y_t = W_o Concat_h(RMSNorm(o_t) [* SiLU(W_g x_t)])

    so the token's transition is ``alpha_t prod_j (I - beta_{t,j} k_{t,j} k_{t,j}^T)``: identity
    plus rank ``n_h``. One query per token, read after the last step. With ``n_h = 1`` and equal
    weights this is DeltaNet (``gated=False``) or Gated DeltaNet (``gated=True``) exactly: the
    parameters have the same names and shapes. ``gated=True`` is the paper's Gated DeltaProduct:
    Gated DeltaNet's decay ``alpha_t = exp(g_t)`` (Mamba-2 parameterization, applied once per
    token) and its output gate ``SiLU(W_g x_t)``.

    The ``n_h`` keys (values, betas) come from one projection of width ``n_h d`` per head,
    convolved over the sequence like DeltaNet's; eigenvalues of a token's transition lie in
    [0, 1] by default for ``n_h <= 2`` (a product of two PSD contractions) and reach [-1, 1] (and
    complex rotations) with ``negative_eigenvalues``.

    Shape: ``(B, L, D) -> (B, L, D)``; causal. Modes: ``"fused"`` (default; the compiled
    recurrence on the CPU, the chunk form elsewhere), ``"chunk"`` and ``"reference"`` (the kernel's
    token-by-token recurrence). State ``(M, conv_buffer)``, ``M = S^T`` (B, H, d, d),
    buffer (B, conv_size - 1, (1 + 2 n_h) D).

    Initialization: as DeltaNet (and Gated DeltaNet's for ``A_log``, ``dt_bias``, ``w_a``, ``W_g``
    when gated; then ``A_log`` and ``dt_bias`` are kept out of weight decay, as Gated DeltaNet's).

    Options: ``n_householder`` (n_h, default 2), ``gated`` (default False), and DeltaNet's.
    Differences from the paper: as DeltaNet.
    """

    _name = "deltaproduct"
    _product = True

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int = 4,
        n_householder: int = 2,
        gated: bool = False,
        conv_size: int = 4,
        negative_eigenvalues: bool = False,
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        self._setup(d_model, n_heads=n_heads, conv_size=conv_size, negative_eigenvalues=negative_eigenvalues,
                    n_householder=n_householder, gated=gated, chunk_size=chunk_size, norm_eps=norm_eps,
                    device=device, dtype=dtype)
        if self.gated:  # the decay's parameters exist only when gated: declared per instance
            self.no_weight_decay = GatedDeltaNet.no_weight_decay
