"""The HyperZ·Z·W operator: a slow coordinate network's hyper-kernel, made context-dependent by the input."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ShapeError
from ...registry import Paper, register
from .._common import causal_fft_conv, wide_dtype
from .base import Mixer
from .lru import uninitialized_linear

MIXINGS = ("linear", "none")


@register("mixer", "hyperzzw", paper=Paper("HyperZcdotZcdotW Operator Connects Slow-Fast Networks for Full Context "
                                           "Interaction", 2024, "2401.17948"))
class HyperZZW(Mixer):
    r"""HyperZ·Z·W on sequences: ``y = Z * (W ⊙ Z)``, the hyper-kernel ``W`` from a slow coordinate MLP.

    Paper: Harvie Zhang, "HyperZ·Z·W Operator Connects Slow-Fast Networks for Full Context
    Interaction", 2024, arXiv:2401.17948 (its arXiv title: "HyperZcdotZcdotW Operator Connects Slow-Fast
    Networks for Full Context Interaction"): coordinate-based implicit MLPs (the slow network) generate
    hyper-kernels ``W``; the operator "connects hyper-kernels (W) and hidden activations (Z) through
    simple elementwise multiplication, followed by convolution of Z using the context-dependent W".

    Equation, per channel ``d`` (depthwise, causal; the global hyper-kernel spans the sequence)::

        c_j = 2 j / (l_max - 1) - 1                       (coordinates in [-1, 1], j = 0 .. L-1)
        h_1 = sin(omega_1 c + phi_1),  h_{i+1} = (U_i h_i + b_i) ⊙ sin(omega_{i+1} c + phi_{i+1}),
        W_j = U_o h(c_j) + b_o                            (slow network: a multiplicative filter MLP)
        W~_j = W_j ⊙ Z_j                                  (context-dependent hyper-kernel)
        y_t = sum_{j=0}^{t} W~_j ⊙ Z_{t-j}                (causal convolution of Z with W~)

    then ``out = P y`` with ``P: D -> D`` (``mixing="linear"``, the fast network's pointwise
    convolution) or ``y`` itself (``mixing="none"``). Output ``t`` reads only ``Z_0 .. Z_t``: causal,
    but with no fixed-size state (a convolution over the whole past), so not recurrent.

    Shape: ``(B, L, D) -> (B, L, D)`` with ``L <= l_max``.

    Modes:
        ``"fft"`` (default): the convolution by FFT on 2L points, one kernel per sequence.
        ``"reference"``: the sum above, written out with a lag matrix.

    Initialization (multiplicative filter networks, Fathony et al. 2021): ``omega ~ U(-omega_0,
    omega_0)`` (``omega_0 = 8``), ``phi ~ U(-pi, pi)``, ``U_i, U_o`` U(+-1/sqrt(hidden)), biases 0
    (``b_o`` too); ``P`` U(+-1/sqrt(D)) with bias.

    Options: ``hidden`` (16), ``n_filters`` (2 sine filters), ``l_max`` (256), ``omega0``,
    ``mixing``, ``generator``, ``device``, ``dtype``.

    Deviations: one global hyper-kernel (the Terminator's local kernels, multi-branch SFNE block,
    bottleneck, standardization and slow neural loss are not built); 1-D sequences only.
    """

    modes = ("fft", "reference")

    def __init__(self, d_model: int, *, hidden: int = 16, n_filters: int = 2, l_max: int = 256,
                 omega0: float = 8.0, mixing: str = "linear", generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(d_model)
        if int(hidden) < 1 or int(n_filters) < 1:
            raise ConfigError(f"hyperzzw: hidden and n_filters must be >= 1, got {hidden}, {n_filters}")
        if int(l_max) < 2:
            raise ConfigError(f"hyperzzw: l_max (the longest sequence) must be >= 2, got {l_max}")
        if not omega0 > 0:
            raise ConfigError(f"hyperzzw: omega0 must be > 0, got {omega0}")
        if mixing not in MIXINGS:
            raise ConfigError(f"hyperzzw: mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}")
        factory = {"device": device, "dtype": dtype}
        h, D = int(hidden), d_model
        self.hidden, self.n_filters, self.l_max, self.omega0, self.mixing = h, int(n_filters), int(l_max), float(omega0), mixing
        self.omega = nn.Parameter(torch.empty(self.n_filters, h, **factory))
        self.phi = nn.Parameter(torch.empty(self.n_filters, h, **factory))
        self.U = nn.ParameterList(nn.Parameter(torch.empty(h, h, **factory)) for _ in range(self.n_filters - 1))
        self.b = nn.ParameterList(nn.Parameter(torch.empty(h, **factory)) for _ in range(self.n_filters - 1))
        self.U_o = nn.Parameter(torch.empty(D, h, **factory))
        self.b_o = nn.Parameter(torch.empty(D, **factory))
        self.out = uninitialized_linear(D, D, **factory) if mixing == "linear" else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        g = {"generator": generator}
        h, D = self.hidden, self.d_model
        u = lambda shape, bound: (torch.rand(shape, dtype=torch.float64, **g) * 2 - 1) * bound  # noqa: E731
        with torch.no_grad():
            self.omega.copy_(u(self.omega.shape, self.omega0))
            self.phi.copy_(u(self.phi.shape, math.pi))
            for U, b in zip(self.U, self.b):
                U.copy_(u(U.shape, h ** -0.5))
                b.zero_()
            self.U_o.copy_(u(self.U_o.shape, h ** -0.5))
            self.b_o.zero_()
            if self.out is not None:
                self.out.weight.copy_(u(self.out.weight.shape, D ** -0.5))
                self.out.bias.copy_(u(self.out.bias.shape, D ** -0.5))

    def hyper_kernel(self, L: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The slow network's ``W`` (L, D) at coordinates ``c_0 .. c_{L-1}``; it never sees the input."""
        c = (2 * torch.arange(L, device=self.omega.device, dtype=dtype) / (self.l_max - 1) - 1).unsqueeze(-1)
        omega, phi = self.omega.to(dtype), self.phi.to(dtype)
        h = torch.sin(c * omega[0] + phi[0])
        for i, (U, b) in enumerate(zip(self.U, self.b), start=1):
            h = (h @ U.to(dtype).T + b.to(dtype)) * torch.sin(c * omega[i] + phi[i])
        return h @ self.U_o.to(dtype).T + self.b_o.to(dtype)

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        B, L, D = x.shape
        if L > self.l_max:
            raise ShapeError(f"hyperzzw: sequence length {L} exceeds l_max = {self.l_max}; build the block with "
                             f"l_max >= {L}")
        real = wide_dtype(x.dtype)
        Z = x.to(real)
        Wc = self.hyper_kernel(L, real) * Z  # (B, L, D): W~_j = W_j ⊙ Z_j
        if mode == "fft":
            y = causal_fft_conv(Z, Wc, dim=1)
        else:
            t = torch.arange(L, device=x.device)
            lag = t[:, None] - t[None, :]  # [t, i] -> t - i, the kernel index j with Z_i = Z_{t-j}
            mask = (lag >= 0).to(real)
            kernel = Wc[:, lag.clamp(min=0)] * mask[None, :, :, None]  # (B, t, i, D) = W~_{t-i}
            y = (kernel * Z[:, None]).sum(2)
        if self.out is not None:
            y = self.out(y.to(self.out.weight.dtype))
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, hidden={self.hidden}, n_filters={self.n_filters}, l_max={self.l_max}, "
                f"mixing={self.mixing!r}, modes={self.modes}")
