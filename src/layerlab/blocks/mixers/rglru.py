"""Hawk's recurrent block around the Real-Gated Linear Recurrent Unit (RG-LRU).

De et al., "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
Models", 2024, arXiv:2402.19427. Griffin's mix of these blocks with local attention is in
:mod:`layerlab.blocks.mixers.griffin`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...kernels.linear_recurrence import linear_recurrence
from ...registry import Paper, register
from .._common import causal_depthwise_conv, wide_dtype
from .base import Mixer, State
from .scan import linear_scan

GRIFFIN = Paper(
    "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models",
    2024, "2402.19427",
)


def lecun_normal_(weight: Tensor) -> None:
    """LeCun normal init: std = fan_in^(-1/2) (the paper's init of the gate weights)."""
    nn.init.normal_(weight, mean=0.0, std=weight.shape[-1] ** -0.5)


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
        h_t = a_t ⊙ h_{t-1} + m_t ⊙ (i_t ⊙ v_t),   h_{-1} = 0;   output h_t
        m_t = sqrt(1 - a_t²) for t >= 1,   m_0 = 1

    The gates never see ``h_{t-1}``, so the recurrence is linear in ``h`` with ``a_t`` in
    ``[0, 1]``: the fast form is a parallel scan.

    The first token: the paper's Eq. 4 applies ``sqrt(1 - a_t²)`` at every position. The
    official code (recurrentgemma, ``RGLRU.forward``) resets the recurrence at the start of a
    segment (``segment_pos == 0``) and there uses the multiplier 1, so ``h_0 = i_0 ⊙ v_0``: the
    normalization keeps a stationary state at unit scale, and a state that starts from zero has
    nothing to keep. That is the default here; ``normalize_first=True`` applies
    ``sqrt(1 - a_0²)`` at position 0 as well (Eq. 4 read literally), which shrinks the first
    token's state by that factor (down to ~0.04 at ``a_0 = 0.999``).

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"scan"`` (default): the causal convolution (shifted multiply-adds) and the recurrence in one fused pass
        per channel (:func:`layerlab.kernels.linear_recurrence.linear_recurrence`, a C++/OpenMP
        kernel built on first use; where it cannot be built, the ``"parallel"`` form, with a
        warning).
        ``"parallel"``: the recurrence by the associative scan
        :func:`layerlab.blocks.mixers.scan.linear_scan` (O(L) work, O(log L) depth), pure PyTorch.
        ``"reference"``: the equations token by token (:meth:`step_loop`).

    Recurrent: ``step`` keeps the last ``kernel_size - 1`` conv inputs, ``h``, and a flag per
    sequence that the first token has been seen (for ``m_0``); the state is
    ``N (kernel_size - 1) + N + 1`` numbers per sequence.

    Initialization: ``Λ`` such that ``a^c`` is uniform in ``[a_min, a_max] = [0.9, 0.999]``
    (Sec. 2.4), i.e. ``a = U^(1/c)``, ``Λ = logit(a)``; gate weights ``W_a, W_x`` LeCun normal
    (std ``fan_in^-1/2``) as the paper states, their biases zero; the other linear layers LeCun
    normal with zero bias; conv taps normal with std ``kernel_size^-1/2``, bias zero.

    Options: ``d_rnn`` (``N``; default ``round(expansion * d_model)``), ``expansion`` (4/3: the
    paper's RNN width is about 4D/3, so the block has the ~4D² parameters of an attention
    block), ``c``, ``kernel_size``, ``a_min``/``a_max`` (init range of ``a^c``), ``bias``
    (biases of ``W_g, W_in, W_out``), ``normalize_first`` (False: ``m_0 = 1`` as the official
    code; True: ``m_0 = sqrt(1 - a_0²)``), ``device``, ``dtype``.

    Weight decay skips ``Λ`` (``no_weight_decay``): decaying it pulls ``a = σ(Λ)`` to 1/2, so
    ``a^c`` to 0.004, erasing the memory the init range sets up. The official code ships no
    training code; this follows the LRU's and Mamba's reference code, which keep their
    recurrence's eigenvalue parameters out of weight decay.

    Differences from the paper / official code: the official code (recurrentgemma) draws ``a``
    (not ``a^c``) with ``a²`` uniform in ``[0.9², 0.999²]`` and uses block-diagonal gate weights
    and a conv init of variance ``0.01 / k``; here the gates are dense, as in the paper's
    equations, and the init follows the paper's text. Exact (erf) GeLU. The recurrence and
    gates run in float32 or wider; the output has the input dtype. sqrt's derivative is clipped
    at 1000, as in the official code (it only acts when ``1 - a_t²`` underflows).
    """

    modes = ("scan", "parallel", "reference")
    recurrent = True
    no_weight_decay = ("lam",)

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
        normalize_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        _check_rglru_options(d_rnn, expansion, c, kernel_size, a_min, a_max)
        self.normalize_first = bool(normalize_first)
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
            lecun_normal_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        lecun_normal_(self.conv_weight)
        nn.init.zeros_(self.conv_bias)
        with torch.no_grad():
            # a^c ~ U[a_min, a_max]  =>  a = U^(1/c),  Λ = logit(a) = log a - log(1 - a)
            u = torch.empty_like(self.lam, dtype=torch.float64).uniform_(self.a_min, self.a_max)
            log_a = torch.log(u) / self.c
            self.lam.copy_(log_a - torch.log(-torch.expm1(log_a)))

    # --- the RG-LRU, element-wise -----------------------------------------------------
    def _gates(self, v: Tensor, first: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``a_t`` and the normalized input ``m_t ⊙ i_t ⊙ v_t``, in float32 or wider.

        ``first`` (broadcasting against ``v[..., 0]``) marks the positions that start a
        sequence, where ``m_t = 1`` unless ``normalize_first``; None: no position does."""
        wide = wide_dtype(v.dtype)
        v = v.to(wide)
        r = torch.sigmoid(F.linear(v, self.w_a.weight.to(wide), self.w_a.bias.to(wide)))
        i = torch.sigmoid(F.linear(v, self.w_x.weight.to(wide), self.w_x.bias.to(wide)))
        log_a = -self.c * r * F.softplus(-self.lam.to(wide))
        a = torch.exp(log_a)
        m = _SqrtBoundedGrad.apply(-torch.expm1(2.0 * log_a))  # sqrt(1 - a_t²), accurate near a_t = 1
        if first is not None and not self.normalize_first:
            m = torch.where(first.unsqueeze(-1), torch.ones_like(m), m)
        return a, m * (i * v)

    def _conv(self, u: Tensor) -> Tensor:
        """Causal depthwise conv over (B, L, N): v_t = b + sum_j w[:, k-1-j] u_{t-j}."""
        return causal_depthwise_conv(u, self.conv_weight, self.conv_bias)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        gate = F.gelu(self.w_g(x))
        v = self._conv(self.w_in(x))
        first = torch.arange(x.shape[1], device=x.device) == 0  # (L,): position 0 starts the sequence
        a, b = self._gates(v, first)
        h = linear_recurrence(a, b) if mode == "scan" else linear_scan(a, b)
        return self.w_out(gate * h.to(x.dtype))

    # --- token by token ---------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """``(conv buffer (B, k-1, N), h (B, N) in float32 or wider, started (B,) bool)``."""
        f = self._factory(device, dtype)
        conv = torch.zeros(batch_size, self.kernel_size - 1, self.d_rnn, **f)
        h = torch.zeros(batch_size, self.d_rnn, device=f["device"], dtype=wide_dtype(f["dtype"]))
        started = torch.zeros(batch_size, dtype=torch.bool, device=f["device"])
        return conv, h, started

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        conv, h, started = state
        gate = F.gelu(self.w_g(x_t))
        u_t = self.w_in(x_t)
        window = torch.cat((conv, u_t.unsqueeze(1)), dim=1)  # u_{t-k+1} .. u_t
        v_t = self.conv_bias + (window * self.conv_weight.t()).sum(dim=1)
        a_t, b_t = self._gates(v_t, ~started)
        h = a_t * h + b_t
        y_t = self.w_out(gate * h.to(x_t.dtype))
        return y_t, (window[:, 1:], h, torch.ones_like(started))

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_rnn={self.d_rnn}, c={self.c}, kernel_size={self.kernel_size}, "
                f"normalize_first={self.normalize_first}")
