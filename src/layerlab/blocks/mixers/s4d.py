"""S4D: a diagonal state space layer, one complex diagonal SSM per channel, run as an FFT convolution."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import causal_fft_conv, wide_dtype
from .base import Mixer, State
from .hippo import hippo_legs, ptd
from .lru import complex_dtype, uninitialized_linear

INITS = ("lin", "inv", "ptd")
MIXINGS = ("glu", "none")


@register("mixer", "s4d", paper=Paper("On the Parameterization and Initialization of Diagonal State Space Models",
                                      2022, "2206.11893"))
class S4D(Mixer):
    r"""S4D: H independent diagonal state space models (one per channel), zero-order hold, FFT.

    Paper: Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal State Space
    Models", 2022, arXiv:2206.11893 (the S4 family: Gu, Goel, Ré, "Efficiently Modeling Long
    Sequences with Structured State Spaces", 2021, arXiv:2111.00396).

    Equation, per channel ``h`` (H = d_model channels, each with N/2 complex modes ``n``)::

        x'(t) = A x(t) + B u(t),  y(t) = C x(t) + D u(t)       A = diag(-exp(A_re_log) + i A_im)
        Abar = exp(Delta A),  Bbar = (Delta A)^{-1} (exp(Delta A) - I) Delta B   (zero-order hold)
        x_k = Abar x_{k-1} + Bbar u_k,  y_k = 2 Re(C x_k) + D u_k
        <=>  y = K * u + D u,  K_l = 2 Re(sum_n C_n Abar_n^l Bbar_n)   (Vandermonde kernel)

    The factor 2 and ``Re`` stand for the conjugate partners of the N/2 modes (a real SSM of
    state size N). ``B`` is fixed to 1 and absorbed into ``C`` (as in the paper's reference
    implementation; ``C B`` is the only product the kernel sees). The layer output is
    ``GLU(W GELU(y))`` with ``W: H -> 2H`` (``mixing="glu"``, the S4/S4D block), or ``y`` itself
    (``mixing="none"``).

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"fft"`` (default): ``K`` in closed form (Vandermonde), ``y = K * u`` by FFT with both
        signals zero-padded to 2L (so the circular convolution is the causal linear one).
        ``"reference"``: the discretized recurrence token by token (:meth:`step_loop`).

    Initialization:
        - ``A``: S4D-Lin ``A_n = -1/2 + i pi n`` (``init="lin"``, default) or S4D-Inv
          ``A_n = -1/2 + i (N/pi) (N/(2n+1) - 1)`` (``init="inv"``), n = 0 .. N/2-1, same for every
          channel; stored as ``A_re_log = log(1/2)`` and ``A_im``.
          ``init="ptd"``: perturb-then-diagonalise HiPPO-LegS of size N/2 (:mod:`.hippo`, Yu et al.,
          "Robustifying State-space Models for Long Sequences via Approximate Diagonalization", 2023,
          arXiv:2310.01698): ``A_H + E = V diag(Lambda) V^{-1}`` with ``||E||_2 = ptd_eps``; ``A = Lambda``
          and ``C = (c V) * (V^{-1} B_H)`` for a complex standard normal ``c`` (``B`` absorbed into ``C``),
          so the layer's kernel starts as twice the real part of HiPPO-LegS's with readout ``c``, up to
          the backward error ``ptd_eps``.
        - ``Delta``: log-uniform on ``[dt_min, dt_max] = [1e-3, 1e-1]`` per channel, stored as ``log_dt``.
        - ``C``: complex standard normal (E|C_n|^2 = 1); ``D``: N(0, 1); ``W``: U(+-1/sqrt(H)) with
          bias (PyTorch's Linear default).

    Options: ``d_state`` (N, even, default 64), ``init``, ``ptd_eps`` (``init="ptd"`` only), ``dt_min``, ``dt_max``, ``mixing``,
    ``generator`` (for the random initialization), ``device``, ``dtype``.

    The kernel, FFT and recurrence run in float32 or wider; the output has the input dtype.

    Weight decay skips ``A_re_log, A_im, log_dt`` (``no_weight_decay``), as the reference code
    registers them (``weight_decay: 0.0``): decay would pull every ``A_n`` towards ``-1 + 0i``
    and lose the S4D-Lin (or -Inv) structure.

    Deviations: no dropout, no bidirectional variant, no per-parameter learning rates for
    ``A, Delta`` (the paper's optimizer settings belong to the optimizer); the kernel is
    computed for each input length (no fixed ``l_max``).
    """

    modes = ("fft", "reference")
    recurrent = True
    no_weight_decay = ("A_re_log", "A_im", "log_dt")

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 64,
        init: str = "lin",
        ptd_eps: float = 0.1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        mixing: str = "glu",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if int(d_state) < 2 or int(d_state) % 2:
            raise ConfigError(f"s4d: d_state must be even and >= 2 (N/2 complex modes and their conjugates), "
                              f"got {d_state}; e.g. d_state={max(2, int(d_state) + int(d_state) % 2)}")
        if init not in INITS:
            raise ConfigError(f"s4d: init must be one of {', '.join(INITS)} (S4D-Lin, S4D-Inv), got {init!r}")
        if not float(ptd_eps) > 0:
            raise ConfigError(f"s4d: ptd_eps (the PTD perturbation norm) must be > 0, got {ptd_eps}; e.g. 0.1")
        if not 0.0 < dt_min <= dt_max:
            raise ConfigError(f"s4d: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if mixing not in MIXINGS:
            raise ConfigError(f"s4d: mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}")
        factory = {"device": device, "dtype": dtype}
        H, M = d_model, int(d_state) // 2
        self.d_state, self.init, self.dt_min, self.dt_max, self.mixing = int(d_state), init, float(dt_min), float(dt_max), mixing
        self.ptd_eps = float(ptd_eps)
        self.log_dt = nn.Parameter(torch.empty(H, **factory))
        self.A_re_log = nn.Parameter(torch.empty(H, M, **factory))
        self.A_im = nn.Parameter(torch.empty(H, M, **factory))
        self.C_re = nn.Parameter(torch.empty(H, M, **factory))
        self.C_im = nn.Parameter(torch.empty(H, M, **factory))
        self.D = nn.Parameter(torch.empty(H, **factory))
        self.out = uninitialized_linear(H, 2 * H, **factory) if mixing == "glu" else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        H, M, N = self.d_model, self.d_state // 2, self.d_state
        g = {"generator": generator}
        n = torch.arange(M, dtype=torch.float64)
        imag = math.pi * n if self.init == "lin" else (N / math.pi) * (N / (2 * n + 1) - 1)
        with torch.no_grad():
            self.A_re_log.fill_(math.log(0.5))
            self.A_im.copy_(imag.expand(H, M))
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            self.log_dt.copy_(lo + (hi - lo) * torch.rand(H, dtype=torch.float64, **g))
            # complex standard normal: each part N(0, 1/2)
            self.C_re.copy_(torch.randn(H, M, dtype=torch.float64, **g) * 0.5 ** 0.5)
            self.C_im.copy_(torch.randn(H, M, dtype=torch.float64, **g) * 0.5 ** 0.5)
            self.D.copy_(torch.randn(H, dtype=torch.float64, **g))
            if self.init == "ptd":
                self._ptd_init(generator)
            if self.out is not None:
                bound = H ** -0.5
                self.out.weight.copy_(torch.empty(self.out.weight.shape).uniform_(-bound, bound, **g))
                self.out.bias.copy_(torch.empty(self.out.bias.shape).uniform_(-bound, bound, **g))

    def _ptd_init(self, generator: torch.Generator | None) -> None:
        H, M = self.d_model, self.d_state // 2
        A_H, B_H = hippo_legs(M)
        lam, V, _ = ptd(A_H, self.ptd_eps, generator=generator)
        if lam.real.max() >= 0:
            raise ConfigError(f"s4d: init='ptd' with ptd_eps={self.ptd_eps} moved an eigenvalue of HiPPO-LegS to "
                              f"Re >= 0 ({lam.real.max().item():.3g}); use a smaller ptd_eps")
        b = torch.linalg.solve(V, B_H.to(V.dtype))
        c = torch.complex(torch.randn(H, M, dtype=torch.float64, generator=generator),
                          torch.randn(H, M, dtype=torch.float64, generator=generator)) * 0.5 ** 0.5
        C = (c @ V) * b
        self.A_re_log.copy_(torch.log(-lam.real).expand(H, M))
        self.A_im.copy_(lam.imag.expand(H, M))
        self.C_re.copy_(C.real)
        self.C_im.copy_(C.imag)

    # --- the SSM as the paper writes it -------------------------------------------------
    def continuous(self, cdtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """``(A, C, Delta)``: A, C (H, N/2) complex, Delta (H,) real."""
        real = torch.float64 if cdtype == torch.complex128 else torch.float32
        A = torch.complex(-torch.exp(self.A_re_log.to(real)), self.A_im.to(real))
        C = torch.complex(self.C_re.to(real), self.C_im.to(real))
        return A, C, torch.exp(self.log_dt.to(real))

    def discretize(self, cdtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """Zero-order hold: ``(Abar, Bbar, C)``, each (H, N/2) complex, with B = 1."""
        A, C, dt = self.continuous(cdtype)
        dtA = A * dt.unsqueeze(-1)
        Abar = torch.exp(dtA)
        Bbar = (Abar - 1) / A  # (Delta A)^{-1} (exp(Delta A) - 1) Delta B with B = 1
        return Abar, Bbar, C

    def kernel(self, L: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """``K`` (H, L): ``K_l = 2 Re(sum_n C_n Abar_n^l Bbar_n)``, computed in closed form."""
        cdtype = complex_dtype(dtype)
        A, C, dt = self.continuous(cdtype)
        dtA = A * dt.unsqueeze(-1)
        powers = torch.exp(dtA.unsqueeze(-1) * torch.arange(L, device=dtA.device, dtype=dt.dtype))  # Abar^l
        return 2 * torch.einsum("hn,hnl->hl", C * (torch.exp(dtA) - 1) / A, powers).real

    def _mix(self, y: Tensor) -> Tensor:
        if self.out is None:
            return y
        return F.glu(self.out(F.gelu(y).to(self.out.weight.dtype)), dim=-1)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, H = x.shape
        if mode == "reference":
            return self.step_loop(x)
        real = wide_dtype(x.dtype)
        u = x.to(real).transpose(1, 2)  # (B, H, L)
        K = self.kernel(L, real)
        y = causal_fft_conv(u, K)
        y = y + self.D.to(real).unsqueeze(-1) * u
        return self._mix(y.transpose(1, 2)).to(x.dtype)

    # --- token-by-token inference -----------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (torch.zeros(batch_size, self.d_model, self.d_state // 2, device=f["device"],
                            dtype=complex_dtype(f["dtype"])),)

    def _step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        (x,) = state
        Abar, Bbar, C = self.discretize(x.dtype)
        u = u_t.to(x.real.dtype)
        x = Abar * x + Bbar * u.unsqueeze(-1)
        y = 2 * (C * x).sum(-1).real + self.D.to(u.dtype) * u
        return self._mix(y).to(u_t.dtype), (x,)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}, "
                f"dt=[{self.dt_min}, {self.dt_max}], mixing={self.mixing!r}, modes={self.modes}")
