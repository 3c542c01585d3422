"""The mean normalised Plücker encoding of a sequence's local token pairs (Causal Grassmann mixing).

Zhang Chong, "Attention Is Not What You Need: Grassmann Flows as an Attention-Free Alternative for
Sequence Modeling", 2025, arXiv:2512.19428; the layer is ``layerlab.blocks.mixers.grassmann``.
For reduced token states z (B, L, r) and offsets delta in ``windows``::

    p_t^(delta) = Plücker(z_t, z_{t-delta}),   mean_t = (1/c_t) sum_{delta <= t} p_t^(delta) / max(|p_t^(delta)|, eps)

(c_t the number of offsets with t - delta >= 0; mean_t = 0 where there is none).

Two forms, tested equal: ``plucker_mean_pairs`` (PyTorch: the pairs of every offset gathered at
once, a (B, W, L, r(r-1)/2) tensor, then averaged) and ``plucker_mean_fused`` (a C++/OpenMP loop,
``plucker.cpp``, that builds one pair's r(r-1)/2 coordinates at a time and adds them to the mean,
with a hand-written backward). The PyTorch form's time goes to elementwise passes over that
W-times-larger tensor (with r = 16 and 6 offsets, 24 MB at the recall suite's sizes) and to the
gathers' scatter backward; the fused loop keeps one pair in registers. CPU only, built on first
use; elsewhere (GPU, torch.func, no compiler) and for double backward the PyTorch form serves.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ShapeError
from ._extensions import LazyExtension, compile_inline

SOURCE = Path(__file__).with_name("plucker.cpp")

# ``extension()``: the compiled kernel, built on first use; None where it is switched off or cannot be built.
extension = LazyExtension(
    lambda: compile_inline("plucker", SOURCE, ["grassmann_forward", "grassmann_backward"], ["-O3", "-fopenmp"]),
    what="the fused Plücker mean", fallback="PyTorch form")


def plucker(a: Tensor, b: Tensor) -> Tensor:
    r"""Plücker coordinates of the 2-plane spanned by ``a`` and ``b`` in ``R^r``::

        p_ij = a_i b_j - a_j b_i,   1 <= i < j <= r

    the 2x2 minors of the r x 2 matrix ``[a b]``, in row-major order of ``(i, j)``:
    ``(1,2), (1,3), ..., (1,r), (2,3), ...``. ``a, b`` of shape ``(..., r)`` -> ``(..., r(r-1)/2)``.
    Changing the basis of the plane, ``[a' b'] = [a b] G`` with ``G`` 2x2 invertible, scales
    ``p`` by ``det G``: the point of the projective space (the plane) is unchanged.
    """
    if a.shape[-1] != b.shape[-1] or a.shape[-1] < 2:
        raise ShapeError(f"plucker: a and b need the same last dimension r >= 2; got {tuple(a.shape)}, {tuple(b.shape)}")
    i, j = torch.triu_indices(a.shape[-1], a.shape[-1], offset=1, device=a.device)
    return a[..., i] * b[..., j] - a[..., j] * b[..., i]


def _valid(L: int, windows: Sequence[int], like: Tensor) -> Tensor:
    """(W, L): 1 where position t has the offset's partner t - delta >= 0, else 0 (dtype of `like`)."""
    t = torch.arange(L, device=like.device)
    return (t[None, :] >= torch.tensor(tuple(windows), device=like.device)[:, None]).to(like.dtype)


def plucker_mean_pairs(z: Tensor, windows: Sequence[int], eps: float, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """PyTorch form: ``(mean (B, L, P), c (L,))`` with every offset's pairs gathered at once."""
    L = z.shape[1]
    deltas = torch.tensor(tuple(windows), device=z.device)  # (W,)
    t = torch.arange(L, device=z.device)
    m = max(windows)
    padded = F.pad(z, (0, 0, m, 0))  # z_{t-delta} = padded[:, m + t - delta]
    past = padded[:, m + t[None, :] - deltas[:, None]]  # (B, W, L, r)
    p = plucker(z.unsqueeze(1), past)  # (B, W, L, P)
    if normalize:  # max(|p|, eps) as sqrt(max(|p|^2, eps^2)): the same value, and no NaN in a second
        # derivative at the p = 0 of the positions t < delta, which the mask below drops
        p = p / (p * p).sum(dim=-1, keepdim=True).clamp_min(eps * eps).sqrt()
    valid = _valid(L, windows, z)
    count = valid.sum(dim=0)  # (L,)
    return (p * valid[..., None]).sum(dim=1) / count.clamp_min(1)[:, None], count


class _FusedMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, windows, eps):  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.windows, ctx.eps = windows, eps
        return extension().grassmann_forward(z, list(windows), float(eps))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the PyTorch form, keeping its graph
            mean, _ = plucker_mean_pairs(z, ctx.windows, ctx.eps)
            return torch.autograd.grad(mean, z, grad, create_graph=True)[0], None, None
        return extension().grassmann_backward(z, grad.contiguous(), list(ctx.windows), float(ctx.eps)), None, None


def plucker_mean_fused(z: Tensor, windows: Sequence[int], eps: float) -> tuple[Tensor, Tensor]:
    """Fused form (normalised pairs): the compiled loop where it serves, else ``plucker_mean_pairs``."""
    if z.dtype not in (torch.float32, torch.float64) or not extension.serves([z]):
        return plucker_mean_pairs(z, windows, eps)
    count = _valid(z.shape[1], windows, z).sum(dim=0)
    return _FusedMean.apply(z.contiguous(), tuple(int(w) for w in windows), float(eps)), count
