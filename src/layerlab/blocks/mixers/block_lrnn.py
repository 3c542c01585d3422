"""The block-diagonal, input-dependent linear RNN of "Advancing Regular Language Reasoning in
Linear Recurrent Neural Networks" (Fan, Chi & Rudnicky)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import Paper, register
from .._common import init_linear, wide_dtype
from .base import Mixer, State
from .matrix_scan import matrix_recurrence_loop, matrix_scan


def column_normalize(V: Tensor, p: float) -> Tensor:
    """Each column ``v`` of the (..., b, b) matrices ``V`` divided by ``max(1, ||v||_p)``, so that
    every column has p-norm at most 1 (columns already inside the unit p-ball are unchanged)."""
    norms = torch.linalg.vector_norm(V, ord=p, dim=-2, keepdim=True)  # (..., 1, b): one per column
    return V / torch.clamp(norms, min=1.0)


@register("mixer", "block_lrnn",
          paper=Paper("Advancing Regular Language Reasoning in Linear Recurrent Neural Networks", 2023,
                      "2309.07412"))
class BlockLRNN(Mixer):
    r"""Block-diagonal input-dependent linear RNN, with columns of bounded p-norm.

    Paper: Fan, Chi & Rudnicky, "Advancing Regular Language Reasoning in Linear Recurrent Neural
    Networks", 2023 (NAACL 2024), arXiv:2309.07412 (Sec. 4, the proposed LRNN).

    Equation, for input ``u_k`` in R^D and state ``x_k`` in R^{h b} (``h`` blocks of size ``b``,
    ``h b = D``)::

        x_k = A_k x_{k-1} + B u_k,      x_0 = 0,      y_k = C x_k
        A_k = g(u_k) = diag(A_k^(1), ..., A_k^(h)),   A_k^(i) = [v_k^(i,1) ... v_k^(i,b)] in R^{b x b}
        v_k^(i,j) = w_k^(i,j) / max(1, ||w_k^(i,j)||_p),    w_k^(i,j) = W^(i,j) u_k + c^(i,j)

    Every column of every block lies in the unit p-ball (the paper's norm constraint, p = 1.2 in
    its experiments), which keeps the recurrence from blowing up while leaving room for the
    transitions regular languages need: a finite automaton's transition matrix has one-hot
    columns (p-norm 1 for every p), and so does a block that permutes its coordinates, so the
    model can run any automaton with at most ``b`` states in a block exactly, at any length
    (``tests/blocks/mixers/test_block_lrnn.py`` sets such weights by hand for counting mod m).
    A diagonal transition with values in [0, 1] cannot count modulo m > 1 (the paper's Sec. 3).

    Shape: ``(B, L, D) -> (B, L, D)``, causal. State: ``x`` (B, h, b), float32 or wider.

    Modes: ``"scan"`` (default): all ``x_k`` by a parallel odd-even scan over the block
    transitions (:func:`layerlab.blocks.mixers.matrix_scan.matrix_scan`, ``O(L b^3 h)`` work,
    ``O(log L)`` depth, the paper's "PScan"); ``"reference"``: ``step`` token by token.

    Initialization: the paper states none; ``W, c`` (the transition generator ``g``), ``B`` and
    ``C`` are fan-in uniform ``U(+-1/sqrt(D))`` (PyTorch's ``nn.Linear`` default).

    Options: ``block_size`` (b, default 4; ``d_model`` must be a multiple of it), ``p`` (the norm
    of the column constraint, default 1.2, >= 1), ``device``, ``dtype``.

    Deviations: the paper's ``g`` is a map of ``u_k`` to the blocks; here it is affine (one
    ``nn.Linear`` with bias). The authors' release (github.com/tinghanf/RegluarLRNN) generates
    blocks and values with two-layer MLPs, centres each column, divides each block by its
    largest column p-norm (not ``max(1, .)``) and learns an initial state; none of that is here.
    The readout ``C`` is linear (the backbone adds the residual and the channel MLP).
    """

    modes = ("scan", "reference")
    recurrent = True

    def __init__(
        self,
        d_model: int,
        *,
        block_size: int = 4,
        p: float = 1.2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model)
        if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
            raise ConfigError(f"block_lrnn: block_size (b) must be an integer >= 1, got {block_size!r}")
        if d_model % block_size:
            raise ConfigError(f"block_lrnn: d_model ({d_model}) must be a multiple of block_size ({block_size}); "
                              f"use d_model = {block_size * max(1, round(d_model / block_size))} or another block_size")
        if not p >= 1.0:
            raise ConfigError(f"block_lrnn: p (the column norm) must be >= 1 (the paper uses 1.2), got {p}")
        factory = {"device": device, "dtype": dtype}
        self.block_size, self.n_blocks, self.p = int(block_size), d_model // int(block_size), float(p)
        b, h = self.block_size, self.n_blocks
        self.g = nn.Linear(d_model, h * b * b, **factory)   # u -> the h blocks' entries (columns)
        self.B = nn.Linear(d_model, d_model, bias=False, **factory)
        self.C = nn.Linear(d_model, d_model, bias=False, **factory)
        self.reset_parameters()

    @classmethod
    def width_multiple(cls, *, block_size: int = 4, **_: object) -> int:
        return int(block_size)

    def reset_parameters(self) -> None:
        for linear in (self.g, self.B, self.C):
            init_linear(linear)

    def transitions(self, u: Tensor) -> Tensor:
        """``A_k`` as blocks (..., h, b, b) for inputs u (..., D), float32 or wider."""
        w = self.g(u).to(wide_dtype(u.dtype))
        W = w.view(*u.shape[:-1], self.n_blocks, self.block_size, self.block_size)
        return column_normalize(W, self.p)

    def _inputs(self, u: Tensor) -> Tensor:
        return self.B(u).to(wide_dtype(u.dtype)).view(*u.shape[:-1], self.n_blocks, self.block_size)

    def _readout(self, x: Tensor, like: Tensor) -> Tensor:
        return self.C(x.flatten(-2).to(like.dtype))

    def _forward(self, u: Tensor, mode: str) -> Tensor:
        if mode == "reference":
            return self.step_loop(u)
        return self._readout(matrix_scan(self.transitions(u), self._inputs(u)), u)

    def states(self, u: Tensor) -> Tensor:
        """All states ``x_k`` (B, L, h, b), by the plain loop (for tests and probes)."""
        return matrix_recurrence_loop(self.transitions(u), self._inputs(u))

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        f = self._factory(device, dtype)
        return (torch.zeros(batch_size, self.n_blocks, self.block_size, device=f["device"],
                            dtype=wide_dtype(f["dtype"])),)

    def _step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        (x,) = state
        x = (self.transitions(u_t) @ x.unsqueeze(-1)).squeeze(-1) + self._inputs(u_t)
        return self._readout(x, u_t), (x,)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, block_size={self.block_size}, p={self.p}, modes={self.modes}"
