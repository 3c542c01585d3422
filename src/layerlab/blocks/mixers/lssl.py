"""LSSL: the Linear State-Space Layer with HiPPO-LegS, bilinear discretisation, recurrent and Krylov forms."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import causal_fft_conv, wide_dtype
from .base import Mixer, State
from .hippo import hippo_legs
from .lru import uninitialized_linear

MIXINGS = ("linear", "none")


@register("mixer", "lssl", paper=Paper("Combining Recurrent, Convolutional, and Continuous-time Models with "
                                       "Linear State-Space Layers", 2021, "2110.13985"))
class LSSL(Mixer):
    r"""LSSL: H channels, each the continuous-time linear system ``x' = A x + B u, y = C x + D u``.

    Paper: Gu, Johnson, Goel, Saab, Dao, Rudra, Ré, "Combining Recurrent, Convolutional, and
    Continuous-time Models with Linear State-Space Layers", 2021, arXiv:2110.13985.

    Equation, per channel ``h`` with its own step ``Delta_h`` (generalized bilinear transform with
    ``alpha = 1/2``, the bilinear / Tustin rule)::

        Abar = (I - Delta/2 A)^{-1} (I + Delta/2 A),     Bbar = Delta (I - Delta/2 A)^{-1} B
        x_k = Abar x_{k-1} + Bbar u_k,                   y_k = C x_k + D u_k
        <=>  y = K * u + D u,   K = (C Bbar, C Abar Bbar, ..., C Abar^{L-1} Bbar)   (Krylov kernel)

    ``A`` (N x N, shared by the channels) and ``B`` (N) start as HiPPO-LegS in closed form
    (:func:`.hippo.hippo_legs`: ``A_nk = -(2n+1)^{1/2}(2k+1)^{1/2}`` below the diagonal,
    ``-(n+1)`` on it; ``B_n = (2n+1)^{1/2}``) and are trained, as are ``Delta``, ``C``, ``D``.
    The layer output is ``W GELU(y)`` with ``W: H -> H`` (``mixing="linear"``, the paper's
    position-wise linear layer after the LSSL) or ``y`` itself (``mixing="none"``).

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"krylov"`` (default): the Krylov kernel by repeated squaring (``[Bbar]``, then
        ``[X, Abar^{2^j} X]`` until length L), then ``y = K * u`` by FFT on 2L points.
        ``"reference"``: the recurrence token by token (:meth:`step_loop`).

    Initialization: ``A, B`` HiPPO-LegS; ``Delta`` log-uniform on ``[dt_min, dt_max]``
    (default ``[1e-3, 1e-1]``) per channel (stored as ``log_dt``); ``C ~ N(0, 1/N)`` per
    channel; ``D ~ N(0, 1)``; ``W`` U(+-1/sqrt(H)) with bias.

    Options: ``d_state`` (N, default 32), ``dt_min``, ``dt_max``, ``mixing``, ``generator``,
    ``device``, ``dtype``.

    Deviations: one copy per channel (the paper's M copies with separate ``Delta`` are M such
    layers); the kernel is computed naively by dense powers (the paper's fast Krylov algorithm for
    quasiseparable ``A`` is not used: the layer is for small N); no dropout or normalization (the
    backbone adds them). Weight decay skips ``A``, ``B`` and ``log_dt``.
    """

    modes = ("krylov", "reference")
    recurrent = True
    no_weight_decay = ("A", "B", "log_dt")

    def __init__(self, d_model: int, *, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 mixing: str = "linear", generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(d_model)
        if int(d_state) < 1:
            raise ConfigError(f"lssl: d_state must be >= 1 (the HiPPO-LegS order N), got {d_state}")
        if not 0.0 < dt_min <= dt_max:
            raise ConfigError(f"lssl: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if mixing not in MIXINGS:
            raise ConfigError(f"lssl: mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}")
        factory = {"device": device, "dtype": dtype}
        H, N = d_model, int(d_state)
        self.d_state, self.dt_min, self.dt_max, self.mixing = N, float(dt_min), float(dt_max), mixing
        self.A = nn.Parameter(torch.empty(N, N, **factory))
        self.B = nn.Parameter(torch.empty(N, **factory))
        self.C = nn.Parameter(torch.empty(H, N, **factory))
        self.D = nn.Parameter(torch.empty(H, **factory))
        self.log_dt = nn.Parameter(torch.empty(H, **factory))
        self.out = uninitialized_linear(H, H, **factory) if mixing == "linear" else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        H, N = self.d_model, self.d_state
        g = {"generator": generator}
        A, B = hippo_legs(N)
        with torch.no_grad():
            self.A.copy_(A)
            self.B.copy_(B)
            self.C.copy_(torch.randn(H, N, dtype=torch.float64, **g) / math.sqrt(N))
            self.D.copy_(torch.randn(H, dtype=torch.float64, **g))
            lo, hi = math.log(self.dt_min), math.log(self.dt_max)
            self.log_dt.copy_(lo + (hi - lo) * torch.rand(H, dtype=torch.float64, **g))
            if self.out is not None:
                bound = H ** -0.5
                self.out.weight.copy_(torch.empty(self.out.weight.shape).uniform_(-bound, bound, **g))
                self.out.bias.copy_(torch.empty(self.out.bias.shape).uniform_(-bound, bound, **g))

    def discretize(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Bilinear rule: ``(Abar (H, N, N), Bbar (H, N))`` in ``dtype``."""
        A, B, dt = self.A.to(dtype), self.B.to(dtype), torch.exp(self.log_dt.to(dtype))
        I = torch.eye(self.d_state, dtype=dtype, device=A.device)
        half = (dt / 2)[:, None, None] * A  # (H, N, N)
        left = I - half
        Abar = torch.linalg.solve(left, I + half)
        Bbar = dt[:, None] * torch.linalg.solve(left, B.expand(self.d_model, -1).unsqueeze(-1)).squeeze(-1)
        return Abar, Bbar

    def kernel(self, L: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """``K`` (H, L): ``K_l = C Abar^l Bbar``, by repeated squaring of ``Abar``."""
        Abar, Bbar = self.discretize(dtype)
        X, P = Bbar.unsqueeze(-1), Abar  # X: (H, N, m) = [Bbar, Abar Bbar, ..., Abar^{m-1} Bbar]
        while X.shape[-1] < L:
            X = torch.cat([X, P @ X], dim=-1)
            P = P @ P
        return torch.einsum("hn,hnl->hl", self.C.to(dtype), X[..., :L])

    def _mix(self, y: Tensor) -> Tensor:
        if self.out is None:
            return y
        return self.out(F.gelu(y).to(self.out.weight.dtype))

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        L = x.shape[1]
        real = wide_dtype(x.dtype)
        u = x.to(real).transpose(1, 2)  # (B, H, L)
        K = self.kernel(L, real)
        y = causal_fft_conv(u, K)
        y = y + self.D.to(real).unsqueeze(-1) * u
        return self._mix(y.transpose(1, 2)).to(x.dtype)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (torch.zeros(batch_size, self.d_model, self.d_state, device=f["device"],
                            dtype=wide_dtype(f["dtype"])),)

    def _step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        (x,) = state
        Abar, Bbar = self.discretize(x.dtype)
        u = u_t.to(x.dtype)
        x = torch.einsum("hnm,bhm->bhn", Abar, x) + Bbar * u.unsqueeze(-1)
        y = (self.C.to(x.dtype) * x).sum(-1) + self.D.to(x.dtype) * u
        return self._mix(y).to(u_t.dtype), (x,)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, dt=[{self.dt_min}, {self.dt_max}], "
                f"mixing={self.mixing!r}, modes={self.modes}")
