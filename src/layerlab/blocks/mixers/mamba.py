"""Mamba's selective state space layer (S6), optionally with negative eigenvalues."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...kernels.selective_scan import selective_scan
from ...registry import Paper, register
from .._common import causal_depthwise_conv, wide_dtype
from .base import Mixer, State
from .lru import uninitialized_linear


@register("mixer", "mamba", paper=Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
                                        2023, "2312.00752"))
class Mamba(Mixer):
    r"""Mamba block: gated selective SSM (S6) with input-dependent step Delta_t, B_t, C_t.

    Paper: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
    arXiv:2312.00752 (Sec. 3, Algorithm 2, Fig. 3). Negative eigenvalues: Grazzi, Siems, Zela,
    Franke, Hutter, Pontil, "Unlocking State-Tracking in Linear RNNs Through Negative
    Eigenvalues", 2024, arXiv:2411.12537.

    Equation, for input ``u_t`` in R^D, inner width ``E D`` (channels ``d``), state size ``N``::

        [x_t, z_t] = W_in u_t                                   (two E D-vectors)
        x_t <- SiLU(conv1d(x)_t)            depthwise, causal, kernel size conv_size
        Delta_t = softplus(W_Delta (W_r x_t) + b_Delta)       (E D,), W_r: E D -> R (dt_rank)
        B_t = W_B x_t,  C_t = W_C x_t                          (N,), shared by all channels
        A = -exp(A_log)                                        (E D, N), real, negative
        Abar_t = exp(Delta_t A)  (zero-order hold),  Bbar_t = Delta_t B_t  (Euler: the paper's
                                                  simplification of the ZOH Bbar, as implemented)
        h_t = Abar_t (.) h_{t-1} + Bbar_t x_t                  (E D, N), elementwise per (d, n)
        y_t = C_t . h_t + D (.) x_t
        out_t = W_out (y_t (.) SiLU(z_t))

    With ``negative_eigenvalues=True`` the transition is ``Abar_t = 2 exp(Delta_t A) - 1``, mapping
    Mamba's range (0, 1) onto (-1, 1) (Grazzi et al. extend diagonal transitions with values in
    [0, 1] to [-1, 1] by ``A -> 2A - I``); ``Bbar_t`` is unchanged. A transition near -1 flips
    the state's sign at each step, which running parity needs and a transition in [0, 1] cannot
    provide with finite precision (their Theorem 1).

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"scan"`` (default): the fused selective scan of
        :func:`layerlab.kernels.selective_scan.selective_scan`, a C++/OpenMP kernel compiled on
        first use that walks each channel's state once (no (B, L, E D, N) tensor) and applies
        the skip ``D (.) x_t`` and the gate ``SiLU(z_t)`` in the same pass, with a
        hand-written backward (reverse scan over states recomputed from checkpoints). Where no
        compiler is available (or with ``LAYERLAB_NO_EXTENSIONS=1``) it runs the ``"chunked"``
        form instead, the first time with a warning.
        ``"chunked"``: pure PyTorch, chunk by chunk of ``chunk_size`` tokens, all
        ``Abar_t, Bbar_t x_t`` of the chunk at once, then its ``h`` by an odd-even parallel scan
        (``O(T)`` work, ``O(log T)`` depth per chunk of T), starting from the last state of the
        previous chunk. Smaller chunks keep the (B, T, E D, N) working set in cache. The scan
        multiplies transitions directly, never their logarithms: negative transitions need no
        sign handling, and since ``|Abar_t| < 1`` partial products only shrink.
        ``"reference"``: ``step`` token by token (:meth:`step_loop`; the convolution from its
        rolling buffer).

    Initialization (the paper's reference implementation):
        - ``A_log = log(n)``, n = 1..N for every channel (S4D-Real: ``A_n = -n``); ``D = 1``.
        - ``Delta``: ``b_Delta = softplus^{-1}(Delta_0)`` with ``Delta_0`` log-uniform on
          ``[dt_min, dt_max] = [1e-3, 1e-1]`` (floored at 1e-4), so ``Delta`` starts in that range;
          ``W_Delta`` U(+-dt_rank^-1/2).
        - ``W_in, W_r|W_B|W_C, W_out`` and the conv weights and bias: U(+-1/sqrt(fan_in)) (PyTorch's
          default); no biases on the projections.

    Options: ``d_state`` (N, 16), ``expand`` (E, 2), ``conv_size`` (4), ``dt_rank`` ("auto" =
    ceil(D/16)), ``dt_min``, ``dt_max``, ``negative_eigenvalues`` (False), ``bias`` (on W_in and
    W_out), ``chunk_size`` (16, the chunked form's chunk; speed only), ``generator``, ``device``, ``dtype``.

    The SSM runs in float32 or wider; projections in the parameters' dtype; output in the input dtype.

    Weight decay skips ``A_log`` and ``D`` (``no_weight_decay``), as the reference code marks
    them (``_no_weight_decay``): decay would pull every ``A_n = -exp(A_log)`` towards -1 and
    lose the S4D-Real spectrum.

    Deviations: the fused CUDA kernel (hardware-aware scan) is replaced by a fused CPU kernel
    (tensors on other devices run the ``"chunked"`` form); the
    step's conv buffer keeps conv_size - 1 inputs (the minimum). The reference code's rescaling
    of out-projections by depth belongs to the backbone.
    """

    modes = ("scan", "chunked", "reference")
    recurrent = True
    no_weight_decay = ("A_log", "D")

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        expand: float = 2,
        conv_size: int = 4,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        negative_eigenvalues: bool = False,
        bias: bool = False,
        chunk_size: int = 16,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(d_state) < 1:
            raise ConfigError(f"mamba: d_state must be >= 1, got {d_state}")
        if not expand > 0 or int(expand * d_model) < 1:
            raise ConfigError(f"mamba: expand must be > 0 with expand * d_model >= 1, got expand={expand}")
        if int(conv_size) < 1:
            raise ConfigError(f"mamba: conv_size must be >= 1, got {conv_size}")
        if dt_rank == "auto":
            rank = math.ceil(d_model / 16)
        elif isinstance(dt_rank, int) and not isinstance(dt_rank, bool) and dt_rank >= 1:
            rank = dt_rank
        else:
            raise ConfigError(f"mamba: dt_rank must be 'auto' (= ceil(d_model/16)) or an int >= 1, got {dt_rank!r}")
        if int(chunk_size) < 1:
            raise ConfigError(f"mamba: chunk_size must be >= 1 (tokens per scan chunk), got {chunk_size}")
        if not 0.0 < dt_min <= dt_max:
            raise ConfigError(f"mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.d_state, self.expand, self.conv_size, self.dt_rank = int(d_state), expand, int(conv_size), rank
        self.d_inner = int(expand * d_model)
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)
        self.negative_eigenvalues = bool(negative_eigenvalues)
        self.chunk_size = int(chunk_size)
        E, N = self.d_inner, self.d_state
        self.in_proj = uninitialized_linear(d_model, 2 * E, bias=bias, **factory)
        self.conv_weight = nn.Parameter(torch.empty(E, 1, self.conv_size, **factory))
        self.conv_bias = nn.Parameter(torch.empty(E, **factory))
        self.x_proj = uninitialized_linear(E, rank + 2 * N, bias=False, **factory)
        self.dt_proj = uninitialized_linear(rank, E, bias=True, **factory)
        self.A_log = nn.Parameter(torch.empty(E, N, **factory))
        self.D = nn.Parameter(torch.empty(E, **factory))
        self.out_proj = uninitialized_linear(E, d_model, bias=bias, **factory)
        self.reset_parameters(generator)

    DT_FLOOR = 1e-4

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        g = {"generator": generator}

        def uniform_(p: Tensor, bound: float) -> None:
            p.copy_(torch.empty(p.shape, dtype=torch.float64).uniform_(-bound, bound, **g))

        with torch.no_grad():
            for lin in (self.in_proj, self.x_proj, self.out_proj):
                uniform_(lin.weight, lin.in_features ** -0.5)
                if lin.bias is not None:
                    uniform_(lin.bias, lin.in_features ** -0.5)
            uniform_(self.conv_weight, self.conv_size ** -0.5)  # fan_in of a depthwise filter
            uniform_(self.conv_bias, self.conv_size ** -0.5)
            uniform_(self.dt_proj.weight, self.dt_rank ** -0.5)
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            dt = torch.exp(lo + (hi - lo) * torch.rand(self.d_inner, dtype=torch.float64, **g)).clamp(min=self.DT_FLOOR)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
            self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float64)).expand_as(self.A_log))
            self.D.fill_(1.0)

    # --- pieces of the block ----------------------------------------------------------
    def conv(self, x: Tensor) -> Tensor:
        """Causal depthwise convolution over time then SiLU: (B, L, E D) -> (B, L, E D)."""
        return F.silu(causal_depthwise_conv(x, self.conv_weight[:, 0, :], self.conv_bias))

    def selection(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(Delta, B, C)`` from the conv output x (..., E D): Delta (..., E D), B and C (..., N)."""
        dt_low, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt_low)), B, C

    def transition(self, delta: Tensor) -> Tensor:
        """``Abar = exp(Delta A)`` (or ``2 exp(Delta A) - 1``): (..., E D) -> (..., E D, N), work dtype."""
        A = -torch.exp(self.A_log.to(delta.dtype))
        Abar = torch.exp(delta.unsqueeze(-1) * A)
        return 2 * Abar - 1 if self.negative_eigenvalues else Abar

    def _forward(self, u: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(u)
        param = self.in_proj.weight.dtype
        x, z = self.in_proj(u.to(param)).chunk(2, dim=-1)
        x = self.conv(x)
        delta, B, C = self.selection(x)
        work = wide_dtype(x.dtype)
        delta, B, C, xw = delta.to(work), B.to(work), C.to(work), x.to(work)
        A = -torch.exp(self.A_log.to(work))
        # y_t = (C_t . h_t + D (.) x_t) (.) SiLU(z_t), the skip and the gate inside the scan
        y, _ = selective_scan(delta, A, B, C, xw, D=self.D.to(work), z=z.to(work),
                              negative_eigenvalues=self.negative_eigenvalues,
                              mode="fused" if mode == "scan" else "chunk", chunk_size=self.chunk_size)
        return self.out_proj(y.to(param)).to(u.dtype)

    # --- token-by-token inference -----------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """``(conv buffer (B, E D, conv_size - 1), h (B, E D, N))``, zeros."""
        f = self._factory(device, dtype)
        work = wide_dtype(f["dtype"])
        return (torch.zeros(batch_size, self.d_inner, self.conv_size - 1, device=f["device"], dtype=f["dtype"]),
                torch.zeros(batch_size, self.d_inner, self.d_state, device=f["device"], dtype=work))

    def _step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        buffer, h = state
        param = self.in_proj.weight.dtype
        x, z = self.in_proj(u_t.to(param)).chunk(2, dim=-1)
        window = torch.cat((buffer.to(param), x.unsqueeze(-1)), dim=-1)      # inputs t-K+1 .. t
        x = F.silu((window * self.conv_weight[:, 0]).sum(-1) + self.conv_bias)
        delta, B, C = self.selection(x)
        work = h.dtype
        delta, B, C, xw = delta.to(work), B.to(work), C.to(work), x.to(work)
        h = self.transition(delta) * h + (delta * xw).unsqueeze(-1) * B.unsqueeze(-2)
        y = (h * C.unsqueeze(-2)).sum(-1) + self.D.to(work) * xw
        y = y * F.silu(z.to(work))
        return self.out_proj(y.to(param)).to(u_t.dtype), (window[..., 1:].to(buffer.dtype), h)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, expand={self.expand}, "
                f"conv_size={self.conv_size}, dt_rank={self.dt_rank}, chunk_size={self.chunk_size}, "
                f"negative_eigenvalues={self.negative_eigenvalues}, modes={self.modes}")
