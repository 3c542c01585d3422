"""Structured Linear CDEs (SLiCEs): input-dependent structured transitions I + A(dX_t)
("Structured Linear CDEs: Maximally Expressive and Parallel-in-Time Sequence Models", Walker et al.)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...kernels.linear_recurrence import linear_recurrence
from ...registry import Paper, register
from .._common import init_linear, wide_dtype
from .base import Mixer, State
from .matrix_scan import matrix_scan

STRUCTURES = ("block", "walsh_hadamard", "diagonal", "dense")


def hadamard_matrix(n: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The normalized Sylvester-Hadamard matrix ``H_n / sqrt(n)`` (n a power of 2): symmetric and
    orthogonal, ``H H = I``; ``H_{2n} = [[H_n, H_n], [H_n, -H_n]]``."""
    if n < 1 or n & (n - 1):
        raise ConfigError(f"hadamard_matrix: n must be a power of 2, got {n}")
    H = torch.ones(1, 1, dtype=dtype, device=device)
    while H.shape[0] < n:
        H = torch.cat((torch.cat((H, H), 1), torch.cat((H, -H), 1)), 0)
    return H / math.sqrt(n)


def fwht(x: Tensor) -> Tensor:
    """The normalized fast Walsh-Hadamard transform over the last dim (a power of 2): ``x H^T``
    with ``H`` of :func:`hadamard_matrix`, by ``log2 n`` butterfly stages, ``O(n log n)``."""
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ConfigError(f"fwht: the last dim must be a power of 2, got {n}")
    lead = x.shape[:-1]
    h = 1
    while h < n:  # pairs (i, i + h) within blocks of 2h: (a, b) -> (a + b, a - b)
        y = x.reshape(*lead, n // (2 * h), 2, h)
        x = torch.stack((y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]), dim=-2).reshape(*lead, n)
        h *= 2
    return x / math.sqrt(n)


@register("mixer", "slice",
          paper=Paper("Structured Linear CDEs: Maximally Expressive and Parallel-in-Time Sequence Models", 2025,
                      "2505.17761"))
class SLiCE(Mixer):
    r"""Structured Linear CDE: a linear CDE driven by the input path, Euler-discretized, with a
    structured input-dependent transition.

    Paper: Walker, Yang, Muca Cirone, Salvi & Lyons, "Structured Linear CDEs: Maximally
    Expressive and Parallel-in-Time Sequence Models", 2025 (NeurIPS 2025), arXiv:2505.17761.

    Equation: the linear CDE ``dh_s = sum_i A_i h_s dX^i_s + B dX_s`` driven by the path ``X``
    whose increments are ``dX_t = dt [1, x_t]`` (a time channel and the input, ``x_t`` in R^D),
    discretized by Euler's method::

        h_t = (I + A(dX_t)) h_{t-1} + B dX_t,    A(dX) = sum_i dX^i A_i,    h_{-1} = 0
        y_t = C h_t

    with the ``A_i`` (and so ``A(dX)``) structured (``structure=``):

    - ``"block"``: block-diagonal with blocks of size ``b`` (the input-dependent block-diagonal
      linear RNN: maximally expressive, the paper shows, like dense);
    - ``"walsh_hadamard"``: ``A(dX) = H diag(dX W~)``, ``H`` the normalized Walsh-Hadamard matrix
      (orthogonal) and ``W~ = tanh(W)`` (entries in (-1, 1)); applied in ``O(H log H)`` by the
      fast transform (:func:`fwht`); maximally expressive with ``O(H D)`` parameters;
    - ``"diagonal"``: ``A(dX) = diag(dX W)`` (S4D/Mamba-like: not maximally expressive);
    - ``"dense"``: ``A(dX)`` unconstrained (``H^2 (D + 1)`` parameters).

    Shape: ``(B, L, D) -> (B, L, D)``, causal. State: ``h`` (B, H), float32 or wider.

    Modes: ``"scan"`` (default): all ``h_t`` by a parallel scan (the paper's parallel-in-time
    computation): elementwise for the diagonal structure
    (:func:`layerlab.kernels.linear_recurrence.linear_recurrence`), over the blocks' (or dense,
    Walsh-Hadamard: the whole matrix's) transitions otherwise
    (:func:`layerlab.blocks.mixers.matrix_scan.matrix_scan`); ``"reference"``: ``step`` token by
    token (the Walsh-Hadamard transition applied by the fast transform, never as a matrix).

    Initialization (the authors' release, ``init_std = 1``): transition weights normal with
    std ``1 / sqrt(b)`` (block), ``1 / sqrt(H)`` (dense), 1 (diagonal, Walsh-Hadamard, before the
    tanh); ``B`` and ``C`` fan-in uniform. ``dt = 1/40`` as in the release.

    Options: ``structure`` (default ``"block"``), ``d_state`` (H; default ``d_model``, or for
    Walsh-Hadamard the next power of 2), ``block_size`` (b, default 4), ``dt`` (default 1/40),
    ``device``, ``dtype``.

    Deviations from the authors' release: it sets ``h_0`` by an affine map of the first input and
    has no ``B dX`` term; here the state starts at 0 and the paper's ``B dX_t`` term writes the
    input (so ``step`` needs no first-token case). The release's sparse and diagonal-plus-low-rank
    variants are not here (DeltaNet's DPLR transition is ``deltanet``).
    """

    modes = ("scan", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        structure: str = "block",
        d_state: int | None = None,
        block_size: int = 4,
        dt: float = 1.0 / 40,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if structure not in STRUCTURES:
            raise ConfigError(f"slice: structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
        if d_state is None:
            H = 1 << (d_model - 1).bit_length() if structure == "walsh_hadamard" else d_model
        else:
            H = int(d_state)
        if H < 1:
            raise ConfigError(f"slice: d_state (H) must be >= 1 (or None), got {d_state}")
        if structure == "walsh_hadamard" and H & (H - 1):
            raise ConfigError(f"slice: the Walsh-Hadamard structure needs d_state to be a power of 2, got {H} "
                              f"(e.g. {1 << (H - 1).bit_length()}, or None)")
        b = {"block": int(block_size), "diagonal": 1, "dense": H, "walsh_hadamard": H}[structure]
        if b < 1 or H % b:
            raise ConfigError(f"slice: the block structure needs d_state ({H}) to be a multiple of block_size ({b})")
        if not dt > 0:
            raise ConfigError(f"slice: dt (the time step of the increments dX = dt [1, x]) must be > 0, got {dt}")
        factory = {"device": device, "dtype": dtype}
        self.structure, self.d_state, self.block_size, self.dt = structure, H, b, float(dt)
        self.n_blocks = H // b
        C_in = d_model + 1  # the time channel and the input
        if structure in ("diagonal", "walsh_hadamard"):
            self.W = nn.Parameter(torch.empty(C_in, H, **factory))
        else:
            self.W = nn.Parameter(torch.empty(C_in, self.n_blocks, b, b, **factory))
        self.B = nn.Linear(C_in, H, bias=False, **factory)
        self.C = nn.Linear(H, d_model, bias=False, **factory)
        if structure == "walsh_hadamard":
            self.register_buffer("hadamard", hadamard_matrix(H, dtype=torch.float64, device=device), persistent=False)
        self.reset_parameters()

    @classmethod
    def width_multiple(cls, *, structure: str = "block", d_state: int | None = None, block_size: int = 4,
                       **_: object) -> int:
        return int(block_size) if structure == "block" and d_state is None else 1

    def reset_parameters(self) -> None:
        std = {"block": self.block_size ** -0.5, "dense": self.d_state ** -0.5}.get(self.structure, 1.0)
        with torch.no_grad():
            nn.init.normal_(self.W, std=std)
        init_linear(self.B)
        init_linear(self.C)

    # --- the pieces -------------------------------------------------------------------------
    def increments(self, x: Tensor) -> Tensor:
        """``dX = dt [1, x]`` (..., D + 1), float32 or wider."""
        x = x.to(wide_dtype(x.dtype))
        return self.dt * torch.cat((torch.ones_like(x[..., :1]), x), dim=-1)

    def _diag(self, dX: Tensor) -> Tensor:
        W = torch.tanh(self.W) if self.structure == "walsh_hadamard" else self.W
        return dX @ W.to(dX.dtype)  # (..., H)

    def transition_blocks(self, dX: Tensor) -> Tensor:
        """``I + A(dX)`` as blocks (..., n_blocks, b, b) (Walsh-Hadamard: one H x H block)."""
        if self.structure == "walsh_hadamard":
            A = self.hadamard.to(dX.dtype) * self._diag(dX).unsqueeze(-2)  # H diag(a)
            A = A.unsqueeze(-3)
        elif self.structure == "diagonal":
            A = self._diag(dX).unsqueeze(-1).unsqueeze(-1)  # H blocks of 1 x 1
        else:
            A = torch.einsum("...c,cnij->...nij", dX, self.W.to(dX.dtype))
        return A + torch.eye(self.block_size, dtype=A.dtype, device=A.device)

    def apply_transition(self, dX: Tensor, h: Tensor) -> Tensor:
        """``(I + A(dX)) h`` for one token, using the structure (no H x H matrix but for dense)."""
        if self.structure == "walsh_hadamard":
            return h + fwht(self._diag(dX) * h)  # H is symmetric: x H^T = H x
        if self.structure == "diagonal":
            return h + self._diag(dX) * h
        blocks = self.transition_blocks(dX)
        return (blocks @ h.unflatten(-1, (self.n_blocks, self.block_size)).unsqueeze(-1)).squeeze(-1).flatten(-2)

    # --- forward ----------------------------------------------------------------------------
    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        dX = self.increments(x)
        u = self.B(dX.to(self.B.weight.dtype)).to(dX.dtype)
        if self.structure == "diagonal":
            h = linear_recurrence(1.0 + self._diag(dX), u)
        else:
            n, b = self.n_blocks, self.block_size
            h = matrix_scan(self.transition_blocks(dX), u.unflatten(-1, (n, b))).flatten(-2)
        return self.C(h.to(x.dtype))

    # --- token by token ---------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (torch.zeros(batch_size, self.d_state, device=f["device"], dtype=wide_dtype(f["dtype"])),)

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        dX = self.increments(x_t)
        h = self.apply_transition(dX, h) + self.B(dX.to(self.B.weight.dtype)).to(h.dtype)
        return self.C(h.to(x_t.dtype)), (h,)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, structure={self.structure!r}, d_state={self.d_state}, "
                f"block_size={self.block_size}, dt={self.dt:.4g}, modes={self.modes}")
