r"""The selective scan of Mamba (S6): a diagonal, input-dependent linear recurrence.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
arXiv:2312.00752, Sec. 3.2-3.3 and Algorithm 2 (Bbar by Euler, as the paper's code); the option
``negative_eigenvalues``: Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative
Eigenvalues", 2024, arXiv:2411.12537 (``Abar -> 2 Abar - 1``). For channel d and state index n::

    Abar_t[d, n] = exp(Delta_t[d] A[d, n])        (or 2 exp(Delta_t[d] A[d, n]) - 1)
    h_t[d, n]    = Abar_t[d, n] h_{t-1}[d, n] + Delta_t[d] x_t[d] B_t[n]
    y_t[d]       = sum_n C_t[n] h_t[d, n]
    y_t[d]      <- (y_t[d] + D[d] x_t[d]) silu(z_t[d])   (optional: Mamba's skip and gate)

Shapes: ``delta, x (B, L, D)``, ``A (D, N)``, ``B, C (B, L, N)``, ``h0 (B, D, N)`` (zero when
None), the optional ``D (D,)`` and ``z (B, L, D)``; returns ``y (B, L, D)`` and the last state
``h_{L-1} (B, D, N)``. float32 or float64, all inputs of one dtype. The skip and the gate are
the paper's reference kernel's options too (``selective_scan_fn(u, delta, A, B, C, D, z)``);
fused, they spare the block four whole-tensor ops and their backward.

Forms (``mode``):

- ``"recurrent"``: the equations token by token (the reference).
- ``"chunk"``: pure PyTorch; chunk by chunk of ``chunk_size`` tokens, every ``Abar_t`` and
  ``Delta_t x_t B_t`` of the chunk at once as (B, T, D, N) tensors, the chunk's states by an
  odd-even parallel scan (Blelloch, 1990) from the state the previous chunk left.
- ``"fused"`` (default): a C++/OpenMP kernel (``selective_scan.cpp`` beside this file) that
  walks each (batch, channel) state once, never materialising (B, L, D, N) tensors. Forward and
  backward are written by hand: the forward keeps the state entering every chunk of
  ``checkpoint`` tokens, and the backward recomputes a chunk's states from it (in cache) and runs
  the reverse scan ``dh_{t-1} = Abar_t (dh_t + C_t dy_t)`` through them, accumulating the
  gradients of delta, A, B, C, x and h0. It is compiled with g++ (and ninja) on first use into
  ``$LAYERLAB_EXTENSIONS_DIR`` (default ``~/.cache/layerlab/extensions``); where that fails, or
  with ``LAYERLAB_NO_EXTENSIONS=1``, the ``"chunk"`` form runs instead (a failed build says so
  once, in a warning). The chunk form also runs for tensors off the CPU and under
  ``torch.func`` transforms; a double backward (``create_graph=True``) differentiates the chunk
  form's graph, so Hessian-vector products stay exact.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from ._extensions import EXTENSIONS_DIR_ENV, NO_EXTENSIONS_ENV, LazyExtension, compile_inline, fresh_inputs  # noqa: F401  (the switches, re-exported)

MODES = ("fused", "chunk", "recurrent")
SOURCE = Path(__file__).with_name("selective_scan.cpp")
# tokens per checkpoint of the fused backward (measured at B 64, L 128, D 96, N 16 on 2 cores:
# see benchmarks/mixers.py --selective-scan)
CHECKPOINT = 16


def _check(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, x: Tensor, h0: Tensor | None,
           D: Tensor | None = None, z: Tensor | None = None) -> None:
    if delta.dim() != 3 or x.shape != delta.shape or A.dim() != 2 or A.shape[0] != delta.shape[2]:
        raise ShapeError(f"selective_scan expects delta and x of shape (B, L, D) and A of shape (D, N); got "
                         f"delta {tuple(delta.shape)}, x {tuple(x.shape)}, A {tuple(A.shape)}")
    Bsz, L, width = delta.shape
    N = A.shape[1]
    if B.shape != (Bsz, L, N) or C.shape != (Bsz, L, N):
        raise ShapeError(f"selective_scan expects B and C of shape (B, L, N) = {(Bsz, L, N)}; "
                         f"got B {tuple(B.shape)}, C {tuple(C.shape)}")
    if L < 1:
        raise ShapeError("selective_scan: sequence length must be >= 1")
    if h0 is not None and h0.shape != (Bsz, width, N):
        raise ShapeError(f"selective_scan: h0 must have shape (B, D, N) = {(Bsz, width, N)}; got {tuple(h0.shape)}")
    if D is not None and D.shape != (width,):
        raise ShapeError(f"selective_scan: D must have shape (D,) = {(width,)}; got {tuple(D.shape)}")
    if z is not None and z.shape != delta.shape:
        raise ShapeError(f"selective_scan: z must have the shape of x, {tuple(delta.shape)}; got {tuple(z.shape)}")
    tensors = [t for t in (delta, A, B, C, x, h0, D, z) if t is not None]
    if len({t.dtype for t in tensors}) > 1 or delta.dtype not in (torch.float32, torch.float64):
        raise ConfigError("selective_scan: delta, A, B, C, x (and h0, D, z) must share one dtype, float32 or float64; "
                          f"got {', '.join(str(t.dtype) for t in tensors)} (cast them first)")


def _transition(delta: Tensor, A: Tensor, negative: bool) -> Tensor:
    """``Abar = exp(Delta A)`` or ``2 exp(Delta A) - 1``: (..., D) with A (D, N) -> (..., D, N)."""
    Abar = torch.exp(delta.unsqueeze(-1) * A)
    return 2 * Abar - 1 if negative else Abar


def _skip_and_gate(y: Tensor, x: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        y = y + D * x
    return y if z is None else y * torch.nn.functional.silu(z)


def selective_scan_recurrent(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, x: Tensor,
                             h0: Tensor | None = None, *, D: Tensor | None = None, z: Tensor | None = None,
                             negative_eigenvalues: bool = False) -> tuple[Tensor, Tensor]:
    """Reference form: the recurrence, token by token."""
    h = delta.new_zeros(delta.shape[0], A.shape[0], A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(delta.shape[1]):
        Abar = _transition(delta[:, t], A, negative_eigenvalues)
        h = Abar * h + (delta[:, t] * x[:, t]).unsqueeze(-1) * B[:, t].unsqueeze(-2)
        ys.append((h * C[:, t].unsqueeze(-2)).sum(-1))
    return _skip_and_gate(torch.stack(ys, dim=1), x, D, z), h


def _odd_even_scan(a: Tensor, b: Tensor) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` over dim 1 from ``h_{-1} = 0``: pairs of neighbours compose to
    one step, ``(a, b) then (a', b') = (a' a, a' b + b')``; scan the half-length sequence of pairs
    (the odd positions), then take one step from each to the even positions."""
    L = b.shape[1]
    if L == 1:
        return b
    n = L // 2
    a_even, a_odd = a[:, 0:2 * n:2], a[:, 1:2 * n:2]
    h_odd = _odd_even_scan(a_odd * a_even, a_odd * b[:, 0:2 * n:2] + b[:, 1:2 * n:2])
    h_even = torch.cat((b[:, :1], a[:, 2::2] * h_odd[:, :(L - 1) // 2] + b[:, 2::2]), dim=1)
    woven = torch.stack((h_even[:, :n], h_odd), dim=2).flatten(1, 2)
    return torch.cat((woven, h_even[:, n:]), dim=1) if L % 2 else woven


def selective_scan_chunk(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, x: Tensor,
                         h0: Tensor | None = None, *, D: Tensor | None = None, z: Tensor | None = None,
                         negative_eigenvalues: bool = False, chunk_size: int = 16) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch fast form: (B, T, D, N) transitions and inputs per chunk, a parallel scan each."""
    ys, h = [], h0
    for s in range(0, delta.shape[1], chunk_size):  # the state is carried between chunks
        d, b, c, xc = (t[:, s:s + chunk_size] for t in (delta, B, C, x))
        Abar = _transition(d, A, negative_eigenvalues)                 # (B, T, D, N)
        Bx = (d * xc).unsqueeze(-1) * b.unsqueeze(-2)                  # Delta_t x_t B_t
        if h is not None:  # fold the carried state into the chunk's first input
            Bx = torch.cat((Bx[:, :1] + Abar[:, :1] * h.unsqueeze(1), Bx[:, 1:]), dim=1)
        hs = _odd_even_scan(Abar, Bx)
        h = hs[:, -1]
        ys.append((hs * c.unsqueeze(-2)).sum(-1))
    return _skip_and_gate(torch.cat(ys, dim=1), x, D, z), h


# --- the compiled kernel -------------------------------------------------------------------

def _build() -> object:
    # -ffast-math lets g++ call glibc's vector exp (libmvec, <= 4 ulp; 3.4x faster forward,
    # measured) and reorder the sums over n. At compile time only: linked with it, GCC < 13
    # would make every process that loads the library flush denormals to zero.
    return compile_inline("selective_scan", SOURCE,
                          ["selective_scan_forward", "selective_scan_backward", "linear_recurrence_forward",
                           "linear_recurrence_backward"], ["-O3", "-fopenmp", "-ffast-math"])


# ``extension()``: the compiled kernel, built on first use; None where it is switched off or cannot be built.
extension = LazyExtension(lambda: _build(), what="the fused selective scan", fallback="pure-PyTorch chunked form")


def _groups(batch: int, channels: int) -> int:
    """Channel groups per batch element: enough (batch x groups) work items for every thread."""
    return max(1, min(math.ceil(channels / 16), math.ceil(2 * torch.get_num_threads() / batch)))


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta, A, B, C, x, h0, D, z, negative, checkpoint):
        ext = extension()
        groups = _groups(delta.shape[0], delta.shape[2])
        empty = delta.new_empty(0)
        y, h_last, ckpt = ext.selective_scan_forward(delta, A, B, C, x, *(empty if t is None else t for t in (h0, D, z)),
                                                     negative, checkpoint, groups)
        ctx.save_for_backward(delta, A, B, C, x, h0, D, z, ckpt)
        ctx.options = (negative, checkpoint, groups)
        ctx.set_materialize_grads(False)  # an unused h_last (the usual case) costs no zero tensor
        return y, h_last

    @staticmethod
    def backward(ctx, gy, gh):
        delta, A, B, C, x, h0, D, z, ckpt = ctx.saved_tensors
        negative, checkpoint, groups = ctx.options
        wanted = ctx.needs_input_grad[:8]
        if gy is None:
            gy = torch.zeros_like(delta)
        if torch.is_grad_enabled():  # create_graph: differentiate the PyTorch form, keeping its graph
            delta, A, B, C, x, h0, D, z = fresh_inputs(delta, A, B, C, x, h0, D, z)
            inputs = [t for t, w in zip((delta, A, B, C, x, h0, D, z), wanted) if w]
            y, h = selective_scan_chunk(delta, A, B, C, x, h0, D=D, z=z, negative_eigenvalues=negative)
            outputs, cotangents = ((y, h), (gy, gh)) if gh is not None else ((y,), (gy,))
            grads = iter(torch.autograd.grad(outputs, inputs, cotangents, create_graph=True, allow_unused=True))
            return (*(next(grads) if w else None for w in wanted), None, None)
        empty = delta.new_empty(0)
        gdelta, gAp, gBp, gCp, gx, gh0, gDp, gz = extension().selective_scan_backward(
            delta, A, B, C, x, ckpt, empty if D is None else D, empty if z is None else z, gy.contiguous(),
            empty if gh is None else gh.contiguous(), negative, checkpoint, groups)
        return (gdelta, gAp.sum(0), gBp.sum(0), gCp.sum(0), gx, gh0 if h0 is not None else None,
                gDp.sum(0) if D is not None else None, gz if z is not None else None, None, None)


def _fused_applies(tensors: list[Tensor]) -> bool:
    return extension.serves(tensors)


def selective_scan(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, x: Tensor, h0: Tensor | None = None, *,
                   D: Tensor | None = None, z: Tensor | None = None, negative_eigenvalues: bool = False,
                   mode: str = "fused", chunk_size: int = 16, checkpoint: int = CHECKPOINT
                   ) -> tuple[Tensor, Tensor]:
    """``(y (B, L, D), h_last (B, D, N))`` of the selective scan (module docstring), in ``mode``.

    ``chunk_size``: tokens per chunk of the ``"chunk"`` form (speed only); ``checkpoint``: tokens
    between the states the fused forward keeps for its backward (speed and memory only).
    """
    _check(delta, A, B, C, x, h0, D, z)
    negative = bool(negative_eigenvalues)
    if mode == "recurrent":
        return selective_scan_recurrent(delta, A, B, C, x, h0, D=D, z=z, negative_eigenvalues=negative)
    if mode not in MODES:
        raise ConfigError(f"unknown selective_scan mode {mode!r}; modes: {', '.join(MODES)}")
    if int(chunk_size) < 1 or int(checkpoint) < 1:
        raise ConfigError(f"selective_scan: chunk_size and checkpoint must be >= 1 (tokens), got "
                          f"chunk_size={chunk_size}, checkpoint={checkpoint}")
    if mode == "fused" and _fused_applies([t for t in (delta, A, B, C, x, h0, D, z) if t is not None]):
        args = (t if t is None else t.contiguous() for t in (delta, A, B, C, x, h0, D, z))
        return _FusedScan.apply(*args, negative, int(checkpoint))
    return selective_scan_chunk(delta, A, B, C, x, h0, D=D, z=z, negative_eigenvalues=negative,
                                chunk_size=int(chunk_size))
