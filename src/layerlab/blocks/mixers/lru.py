"""The Linear Recurrent Unit (LRU): a diagonal complex linear recurrence with ring initialization."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from ...errors import ConfigError
from ...kernels.linear_recurrence import linear_recurrence
from ...registry import Paper, register
from .._common import wide_dtype
from .base import Mixer, State
from .scan import linear_recurrence_loop, linear_scan

MIXINGS = ("none", "glu")


def uninitialized_linear(in_features: int, out_features: int, *, bias: bool = True,
                         device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Linear:
    """An ``nn.Linear`` whose construction draws no random numbers (the block initializes it)."""
    device = torch.empty(0, device=device).device  # None -> the default device
    return skip_init(nn.Linear, in_features, out_features, bias=bias, device=device, dtype=dtype)


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype whose parts have `dtype` promoted to at least float32."""
    real = wide_dtype(dtype)
    return torch.complex128 if real == torch.float64 else torch.complex64


@register("mixer", "lru", paper=Paper("Resurrecting Recurrent Neural Networks for Long Sequences", 2023,
                                      "2303.06349"))
class LRU(Mixer):
    r"""Linear Recurrent Unit: a diagonal complex linear recurrence, stable by construction.

    Paper: Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu, De, "Resurrecting Recurrent Neural
    Networks for Long Sequences", 2023, arXiv:2303.06349 (Sec. 3, Eq. 7, Appendix A).

    Equation, for inputs ``u_k`` in R^H (H = d_model) and a complex state ``x_k`` in C^N::

        lambda_j = exp(-exp(nu_log_j) + i exp(theta_log_j))          (stable exponential form)
        x_k = diag(lambda) x_{k-1} + exp(gamma_log) (.) (B u_k),   x_0 = 0
        y_k = Re(C x_k) + D (.) u_k

    with ``B`` in C^{N x H}, ``C`` in C^{H x N}, ``D`` in R^H. ``|lambda_j| = exp(-exp(nu_log_j))``
    lies in (0, 1) for every real ``nu_log``: the recurrence cannot blow up during training.

    Shape: ``(B, L, D) -> (B, L, D)``, causal.

    Modes:
        ``"scan"`` (default): the recurrence in one fused pass per state column
        (:func:`layerlab.kernels.linear_recurrence.linear_recurrence`, a C++/OpenMP kernel built
        on first use; where it cannot be built, the ``"parallel"`` form, with a warning).
        ``"parallel"``: the recurrence for all k at once by a parallel associative scan
        (:func:`layerlab.blocks.mixers.scan.linear_scan`, log depth in L), pure PyTorch.
        ``"reference"``: the recurrence token by token (:meth:`step_loop`).

    Initialization (the paper's Lemma 2 in Sec. 3.2, Sec. 3.4 and Appendix A):
        - ring init: ``lambda`` uniform on the ring ``r_min <= |z| <= r_max`` of the complex plane
          with phase in ``(0, max_phase]``: ``nu = -1/2 log(u_1 (r_max^2 - r_min^2) + r_min^2)``,
          ``theta = max_phase u_2``, ``nu_log = log nu``, ``theta_log = log theta``. "Uniform on the
          ring" is uniform in area: ``|lambda|^2`` (not ``|lambda|``) is uniform on
          ``[r_min^2, r_max^2]``.
        - gamma normalization: ``gamma_log = log sqrt(1 - |lambda|^2)``, so that under white-noise
          input each state coordinate has, at stationarity, the variance of its input ``(B u)_j``
          (``gamma^2 sum_i |lambda|^(2i) = 1``); without it the forward pass grows by
          ``1 / (1 - |lambda|^2)`` (the paper's Proposition 3).
        - ``B``: real and imaginary parts i.i.d. N(0, 1/(2H)) (Glorot with halved variance per
          part); ``C``: parts i.i.d. N(0, 1/N); ``D``: N(0, 1).
        Defaults ``r_min = 0.9, r_max = 0.999, max_phase = 2 pi`` are the paper's LRU setting for
        sCIFAR and Pathfinder (its Table 8; ListOps used [0, 0.99], Text and Retrieval [0.5, 0.9],
        PathX [0.999, 0.9999] with phase in [0, pi/10]); Appendix A's code defaults are [0, 1].

    Options: ``d_state`` (N, default ``d_model``), ``r_min``, ``r_max`` (< 1), ``max_phase``,
    ``mixing`` (``"none"``: the LRU as above; ``"glu"``: then ``GLU(W GELU(y))``, the paper's block
    of Fig. 1 / Sec. D.1, which the arena's channel MLP otherwise provides), ``generator`` (for
    the random initialization), ``device``, ``dtype``.

    The recurrence runs in float32 or wider (complex64/complex128); the output has the input dtype.

    Weight decay skips ``nu_log, theta_log, gamma_log, B_re, B_im`` (``no_weight_decay``), as in
    the reference training code (minimal-LRU's ``train_helpers``: these train with Adam at a
    reduced learning rate, without weight decay); decaying ``nu_log`` would pull every
    ``|lambda|`` to ``exp(-1)`` and erase the ring initialization.

    Deviations: no negative-eigenvalue option: the LRU is time-invariant and its complex
    eigenvalues already cover every phase, ``lambda = -r`` included (``theta = pi``); what it
    cannot do is make the transition depend on the input, which is what state tracking (e.g.
    parity) needs. The paper's other architecture parts (batch norm, encoder, the per-parameter
    learning rates of its Table 9) belong to the backbone and optimizer, not to this block.
    """

    modes = ("scan", "parallel", "reference")
    recurrent = True
    no_weight_decay = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int | None = None,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        mixing: str = "none",
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        N = d_model if d_state is None else int(d_state)
        if N < 1:
            raise ConfigError(f"lru: d_state must be >= 1 (or None for d_model), got {d_state}")
        if not 0.0 <= r_min <= r_max < 1.0:
            raise ConfigError(
                f"lru: need 0 <= r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}; eigenvalue "
                "magnitudes live in the unit disk and the normalization sqrt(1 - |lambda|^2) "
                "vanishes at |lambda| = 1 (e.g. r_min=0.9, r_max=0.999)"
            )
        if not max_phase > 0.0:
            raise ConfigError(f"lru: max_phase must be > 0 (phases are drawn in (0, max_phase]), got {max_phase}")
        if mixing not in MIXINGS:
            raise ConfigError(f"lru: mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_state, self.r_min, self.r_max, self.max_phase = N, float(r_min), float(r_max), float(max_phase)
        self.mixing = mixing
        H = d_model
        self.nu_log = nn.Parameter(torch.empty(N, **factory))
        self.theta_log = nn.Parameter(torch.empty(N, **factory))
        self.gamma_log = nn.Parameter(torch.empty(N, **factory))
        self.B_re = nn.Parameter(torch.empty(N, H, **factory))
        self.B_im = nn.Parameter(torch.empty(N, H, **factory))
        self.C_re = nn.Parameter(torch.empty(H, N, **factory))
        self.C_im = nn.Parameter(torch.empty(H, N, **factory))
        self.D = nn.Parameter(torch.empty(H, **factory))
        # skip_init: reset_parameters draws every initial value (from `generator` when given)
        self.out = uninitialized_linear(H, 2 * H, **factory) if mixing == "glu" else None
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        N, H = self.d_state, self.d_model
        g = {"generator": generator}
        with torch.no_grad():
            # u in (0, 1]: keeps nu and theta finite (no log 0) at the ends of the ring
            u1 = 1.0 - torch.rand(N, dtype=torch.float64, **g)
            u2 = 1.0 - torch.rand(N, dtype=torch.float64, **g)
            nu = -0.5 * torch.log(u1 * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2)
            theta = self.max_phase * u2
            self.nu_log.copy_(torch.log(nu))
            self.theta_log.copy_(torch.log(theta))
            modulus = torch.exp(-nu)
            self.gamma_log.copy_(torch.log(torch.sqrt(1.0 - modulus ** 2)))
            for p, std in ((self.B_re, (2 * H) ** -0.5), (self.B_im, (2 * H) ** -0.5),
                           (self.C_re, N ** -0.5), (self.C_im, N ** -0.5), (self.D, 1.0)):
                p.copy_(torch.randn(p.shape, dtype=torch.float64, **g) * std)
            if self.out is not None:
                bound = H ** -0.5
                self.out.weight.copy_(torch.empty(self.out.weight.shape).uniform_(-bound, bound, **g))
                self.out.bias.copy_(torch.empty(self.out.bias.shape).uniform_(-bound, bound, **g))

    # --- the parameters as the paper writes them --------------------------------------
    def eigenvalues(self, dtype: torch.dtype | None = None) -> Tensor:
        """``lambda`` (N,), complex: ``exp(-exp(nu_log) + i exp(theta_log))``."""
        real = (torch.float64 if complex_dtype(dtype or self.nu_log.dtype) == torch.complex128
                else torch.float32)
        nu, theta = torch.exp(self.nu_log.to(real)), torch.exp(self.theta_log.to(real))
        return torch.exp(torch.complex(-nu, theta))

    def _input_matrix(self, cdtype: torch.dtype) -> Tensor:
        """``diag(exp(gamma_log)) B`` (N, H), complex."""
        real = torch.float64 if cdtype == torch.complex128 else torch.float32
        B = torch.complex(self.B_re.to(real), self.B_im.to(real))
        return torch.exp(self.gamma_log.to(real)).unsqueeze(-1) * B

    def states(self, u: Tensor, mode: str = "scan") -> Tensor:
        """All states ``x_k`` (B, L, N), complex, for input ``u`` (B, L, H), by the fused kernel
        (``mode="scan"``), the parallel scan (``"parallel"``) or the plain loop of
        :mod:`layerlab.blocks.mixers.scan` (any other mode)."""
        cdtype = complex_dtype(u.dtype)
        Bu = u.to(cdtype) @ self._input_matrix(cdtype).transpose(0, 1)
        lam = self.eigenvalues(u.dtype).to(cdtype).expand_as(Bu)
        if mode == "scan":
            return linear_recurrence(lam, Bu)
        return (linear_scan if mode == "parallel" else linear_recurrence_loop)(lam, Bu)

    def _readout(self, x: Tensor, u: Tensor) -> Tensor:
        """``Re(C x) + D u`` then the optional mixing; ``x`` (..., N) complex, ``u`` (..., H)."""
        real = x.real.dtype
        y = (x.real @ self.C_re.to(real).transpose(0, 1) - x.imag @ self.C_im.to(real).transpose(0, 1)
             + self.D.to(real) * u.to(real))
        if self.out is not None:
            y = F.glu(self.out(F.gelu(y).to(self.out.weight.dtype)), dim=-1)
        return y

    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        return self._readout(self.states(x, mode), x).to(x.dtype)

    # --- token-by-token inference -----------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (torch.zeros(batch_size, self.d_state, device=f["device"], dtype=complex_dtype(f["dtype"])),)

    def _step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        (x,) = state
        cdtype = x.dtype
        x = self.eigenvalues(u_t.dtype).to(cdtype) * x + u_t.to(cdtype) @ self._input_matrix(cdtype).transpose(0, 1)
        return self._readout(x, u_t).to(u_t.dtype), (x,)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, r=[{self.r_min}, {self.r_max}], "
                f"max_phase={self.max_phase:.4g}, mixing={self.mixing!r}, modes={self.modes}")
