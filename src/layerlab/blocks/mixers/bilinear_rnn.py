"""Bilinear state transitions: the RNN whose transition matrix is a linear function of the input
("Revisiting Bi-Linear State Transitions in Recurrent Neural Networks", Ebrahimi & Memisevic)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import wide_dtype
from .base import Mixer, State
from .matrix_scan import matrix_scan

STRUCTURES = ("full", "factorized", "block", "rotation", "diagonal")


def rms_normalize(h: Tensor) -> Tensor:
    """``h / rms(h)`` over the last dim (exactly scale invariant: no eps; a zero state stays zero)."""
    rms = h.square().mean(-1, keepdim=True).sqrt()
    return h / rms.clamp_min(torch.finfo(h.dtype).tiny)


@register("mixer", "bilinear_rnn",
          paper=Paper("Revisiting Bi-Linear State Transitions in Recurrent Neural Networks", 2025, "2505.21749"))
class BilinearRNN(Mixer):
    r"""Bilinear RNN: the hidden state is multiplied by a matrix that is linear in the input.

    Paper: Ebrahimi & Memisevic, "Revisiting Bi-Linear State Transitions in Recurrent Neural
    Networks", 2025 (NeurIPS 2025), arXiv:2505.21749.

    Equation, for input ``x_t`` in R^D and hidden state ``h_t`` in R^H, with a three-way tensor
    ``W`` in R^{H x H x D}::

        h_{t,i} = sum_{j,k} W_{ijk} x_{t,k} h_{t-1,j},   i.e.   h_t = A_{x_t} h_{t-1},
        (A_x)_{ij} = sum_k W_{ijk} x_k                    (A_x = sum_k x_k W_k: linear in x)
        y_t = C (h_t / rms(h_t))

    There is no additive term (no ``B x_t``, no bias): the state is a *linear* (not affine)
    function of the previous state, so the direction of ``h_t`` is invariant to its scale and the
    state can be renormalized at every step without changing what the model computes (the
    paper's argument for dropping the additive terms). ``h_0`` is learned.

    Structures (the paper's hierarchy, from most to least expressive; ``structure=``):

    - ``"full"``: ``W`` unconstrained (``H^2 D`` parameters); with one-hot inputs ``A_{e_k}`` can
      be any matrix, so it runs any finite automaton with ``H`` states exactly.
    - ``"factorized"``: the CP decomposition ``W_{ijk} = sum_r U_{ir} V_{rk} Z_{jr}``, i.e.
      ``A_x = U diag(V x) Z^T`` (rank ``R``).
    - ``"block"``: ``A_x`` block-diagonal with ``H / b`` independent full bilinear blocks of size b.
    - ``"rotation"``: 2 x 2 blocks ``[[a, -c], [c, a]]`` with ``(a, c)`` linear in ``x`` (a complex
      diagonal transition ``lambda = a + i c``: rotations and scalings, which commute; enough for
      modular addition).
    - ``"diagonal"``: ``A_x = diag(W x)``, real (a Mamba-like input-dependent diagonal transition,
      the lowest level: signs flip, so parity, but no rotation).

    ``additive=True`` adds the affine term of the paper's ablation, ``h_t = A_{x_t} h_{t-1} + B x_t``
    (then the state is not renormalized between steps; the readout still normalizes).

    Shape: ``(B, L, D) -> (B, L, D)``, causal. State: ``h`` (B, H), float32 or wider.

    Modes: ``"scan"`` (default): chunks of ``chunk_size`` tokens, each by a parallel scan of the
    block transitions (:func:`layerlab.blocks.mixers.matrix_scan.matrix_scan`), the state
    renormalized between chunks (without the additive term; products of many transitions would
    otherwise overflow or underflow); ``"reference"``: ``step`` token by token, the state
    renormalized after every step.

    Initialization (ours; the paper's is not restated here): entries of ``W`` (each structure's
    factors) normal with variance such that, for inputs with unit-variance entries, the entries
    of a block of ``A_x`` have variance ``1 / b`` (spectral radius about 1 at init): ``W`` std
    ``(b D)^{-1/2}`` (``b = H`` for full, 1 for diagonal); factorized ``U, Z`` std ``R^{-1/2}``, ``V``
    std ``(R / (H D))^{1/2}``; rotation ``(a, c)`` weights std ``(2 D)^{-1/2}``; ``h_0`` standard normal;
    ``C`` (and ``B``) fan-in uniform.

    Options: ``structure`` (default ``"full"``), ``d_state`` (H, default ``d_model``), ``rank`` (R,
    factorized, default H), ``block_size`` (b, block, default 4), ``additive`` (default False),
    ``chunk_size`` (scan, default 16; speed only), ``device``, ``dtype``.
    """

    modes = ("scan", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        structure: str = "full",
        d_state: int | None = None,
        rank: int | None = None,
        block_size: int = 4,
        additive: bool = False,
        chunk_size: int = 16,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if structure not in STRUCTURES:
            raise ConfigError(f"bilinear_rnn: structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
        H = d_model if d_state is None else int(d_state)
        if H < 1:
            raise ConfigError(f"bilinear_rnn: d_state (H) must be >= 1 (or None for d_model), got {d_state}")
        R = H if rank is None else int(rank)
        if R < 1:
            raise ConfigError(f"bilinear_rnn: rank (R) must be >= 1 (or None for d_state), got {rank}")
        b = {"full": H, "factorized": H, "block": int(block_size), "rotation": 2, "diagonal": 1}[structure]
        if b < 1 or H % b:
            raise ConfigError(f"bilinear_rnn: structure {structure!r} needs d_state ({H}) to be a multiple of its "
                              f"block size {b}" + (" (set block_size)" if structure == "block" else
                                                   " (use an even d_state)" if structure == "rotation" else ""))
        if int(chunk_size) < 1:
            raise ConfigError(f"bilinear_rnn: chunk_size must be >= 1, got {chunk_size}")
        factory = {"device": device, "dtype": dtype}
        self.structure, self.d_state, self.rank, self.block_size = structure, H, R, b
        self.n_blocks, self.additive, self.chunk_size = H // b, bool(additive), int(chunk_size)
        D = d_model
        if structure == "factorized":
            self.U = nn.Parameter(torch.empty(H, R, **factory))
            self.V = nn.Parameter(torch.empty(R, D, **factory))
            self.Z = nn.Parameter(torch.empty(H, R, **factory))
        elif structure == "rotation":
            self.W = nn.Parameter(torch.empty(self.n_blocks, 2, D, **factory))  # (a, c) per block
        else:  # full, block, diagonal: (n_blocks, b, b, D)
            self.W = nn.Parameter(torch.empty(self.n_blocks, b, b, D, **factory))
        self.h0 = nn.Parameter(torch.empty(H, **factory))
        self.B = nn.Linear(D, H, bias=False, **factory) if self.additive else None
        self.C = nn.Linear(H, D, bias=False, **factory)
        self.reset_parameters()

    @classmethod
    def width_multiple(cls, *, structure: str = "full", d_state: int | None = None, block_size: int = 4,
                       **_: object) -> int:
        """With ``d_state = d_model`` (the default), the width must hold whole blocks."""
        if d_state is not None:
            return 1
        return {"block": int(block_size), "rotation": 2}.get(structure, 1)

    def reset_parameters(self) -> None:
        H, D, R, b = self.d_state, self.d_model, self.rank, self.block_size
        with torch.no_grad():
            if self.structure == "factorized":
                nn.init.normal_(self.U, std=R ** -0.5)
                nn.init.normal_(self.Z, std=R ** -0.5)
                nn.init.normal_(self.V, std=(R / (H * D)) ** 0.5)
            elif self.structure == "rotation":
                nn.init.normal_(self.W, std=(2 * D) ** -0.5)
            else:
                nn.init.normal_(self.W, std=(b * D) ** -0.5)
            nn.init.normal_(self.h0)
            for linear in (self.B, self.C):
                if linear is not None:
                    bound = linear.in_features ** -0.5
                    nn.init.uniform_(linear.weight, -bound, bound)

    # --- the transition ------------------------------------------------------------------
    def transitions(self, x: Tensor) -> Tensor:
        """``A_x`` as blocks (..., n_blocks, b, b) for inputs x (..., D), float32 or wider."""
        wide = wide_dtype(x.dtype)
        x = x.to(wide)
        if self.structure == "factorized":  # U diag(V x) Z^T
            v = x @ self.V.to(wide).T  # (..., R)
            A = torch.einsum("ir,...r,jr->...ij", self.U.to(wide), v, self.Z.to(wide))
            return A.unsqueeze(-3)
        if self.structure == "rotation":
            ac = torch.einsum("nck,...k->...nc", self.W.to(wide), x)  # (..., n, 2)
            a, c = ac[..., 0], ac[..., 1]
            return torch.stack((torch.stack((a, -c), -1), torch.stack((c, a), -1)), -2)
        return torch.einsum("nijk,...k->...nij", self.W.to(wide), x)

    def initial_state(self, batch_size: int, dtype: torch.dtype) -> Tensor:
        h0 = self.h0.to(dtype).expand(batch_size, -1)
        return h0 if self.additive else rms_normalize(h0)

    def _blocks(self, h: Tensor) -> Tensor:
        return h.unflatten(-1, (self.n_blocks, self.block_size))

    def _readout(self, h: Tensor, like: Tensor) -> Tensor:
        return self.C(rms_normalize(h).to(like.dtype))

    # --- forward -------------------------------------------------------------------------
    def _forward(self, x: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(x)
        B, L, _ = x.shape
        A = self.transitions(x)  # (B, L, n, b, b)
        wide = A.dtype
        u = (self._blocks(self.B(x).to(wide)) if self.additive
             else torch.zeros(B, L, self.n_blocks, self.block_size, dtype=wide, device=x.device))
        h = self._blocks(self.initial_state(B, wide))
        outs = []
        for s in range(0, L, self.chunk_size):
            hs = matrix_scan(A[:, s:s + self.chunk_size], u[:, s:s + self.chunk_size], h)
            outs.append(hs)
            h = hs[:, -1] if self.additive else self._blocks(rms_normalize(hs[:, -1].flatten(-2)))
        return self._readout(torch.cat(outs, dim=1).flatten(-2), x)

    # --- token by token ------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (self.initial_state(batch_size, wide_dtype(f["dtype"])).detach().to(f["device"]).clone(),)

    def _step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        h = (self.transitions(x_t) @ self._blocks(h).unsqueeze(-1)).squeeze(-1).flatten(-2)
        if self.additive:
            h = h + self.B(x_t).to(h.dtype)
        else:
            h = rms_normalize(h)
        return self._readout(h, x_t), (h,)

    def step_loop(self, x: Tensor) -> Tensor:
        """The reference form: ``step`` from the learned ``h_0`` (kept in the graph, so that
        ``h_0`` gets its gradient as in the scan form)."""
        h = self.initial_state(x.shape[0], wide_dtype(x.dtype))
        ys = []
        for t in range(x.shape[1]):
            y, (h,) = self._step(x[:, t], (h,))
            ys.append(y)
        return torch.stack(ys, dim=1)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, structure={self.structure!r}, d_state={self.d_state}, "
                f"block_size={self.block_size}, rank={self.rank}, additive={self.additive}, modes={self.modes}")
