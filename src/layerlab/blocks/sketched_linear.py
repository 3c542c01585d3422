r"""A Linear layer whose backward pass keeps a random sketch of its input instead of the input.

Paper: Bershatsky, Mikhalev, Katrutsa, Gusak, Merkulov & Oseledets, "Memory-Efficient
Backpropagation through Large Linear Layers", 2022, arXiv:2201.13195.

For ``Y = X W^T + b`` with ``X`` of shape ``(B, N)`` (every leading dimension, batch and tokens,
flattened into the ``B`` rows), backpropagation needs

    dL/dX = (dL/dY) W          (exact: needs only W)
    dL/dW = (dL/dY)^T X        (needs X: the memory this method removes)
    dL/db = 1^T (dL/dY)        (exact)

The paper replaces the weight-gradient product by a randomized matrix multiplication: with a random
``S`` of shape ``(B, B_proj)`` such that ``E[S S^T] = I_B``,

    dL/dW  ~=  (dL/dY)^T S S^T X  =  (S^T dL/dY)^T (S^T X),

an unbiased estimate. The forward pass stores the sketch ``S^T X`` (``B_proj x N``) instead of
``X`` (``B x N``), a ratio ``rho = B_proj / B`` of its memory; ``S`` itself is not stored but drawn
again in the backward pass from the same seed (as the authors' code re-creates it from the saved
generator state). Sketches (``sketch``):

- ``"gaussian"``: ``S_ij ~ N(0, 1/B_proj)`` i.i.d.;
- ``"rademacher"``: ``S_ij = +-1/sqrt(B_proj)`` with equal probability.

Both give ``E[S S^T] = I``. For one entry ``(i, j)`` of the estimate, with ``g_i`` the i-th column
of ``dL/dY`` and ``x_j`` the j-th column of ``X``, the variance is
``(|g_i|^2 |x_j|^2 + (g_i . x_j)^2) / B_proj`` for the Gaussian sketch and that minus
``2 sum_m g_mi^2 x_mj^2 / B_proj`` for the Rademacher one (tested). The paper also has
subsampled DCT/DFT sketches; they are not implemented here.

What was verified: the abstract (randomized matrix multiplication for the backward pass of linear
layers; memory saved; the variance of the estimate) and the authors' code (``fewbit``,
``functional/linear.py``: the Gaussian projection scaled by ``1/B_proj``, the Rademacher ``+-1/2``
entries scaled by ``4/B_proj``, the projection re-drawn from the generator state in ``backward``,
exact input and bias gradients). ``B_proj = ceil(rho * B)`` here.

Shape: ``(*, in_features) -> (*, out_features)``, as ``nn.Linear``; the forward output is exact.
The module is an ``nn.Linear`` (same parameters, initialization and ``state_dict`` keys, plus the
``draws`` counter); ``reference(x)`` is the exact Linear it estimates the gradient of. The sketch
is used only in training mode with gradients enabled and a trainable weight; otherwise the layer is
a plain Linear. Each sketch is drawn from a generator seeded by ``(seed, draws)``; ``draws`` counts
the sketches drawn and is a buffer, so a resumed run draws the same sketches (no global RNG).

Pitfall (measured in ``benchmarks/compress_sketched.py``): the saving is real only where nothing
else keeps ``X``. After a ReLU, whose backward keeps its output, ``X`` *is* that output and stays
in memory whatever the Linear saves; after GELU (which keeps its input) or LayerNorm, the Linear's
copy of ``X`` is the only one and the sketch removes it.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ._common import check_last_dim

SKETCHES = ("gaussian", "rademacher")
_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, draw) pairs over distinct seeds


def sketch_rows(n: int, ratio: float) -> int:
    """``B_proj = ceil(ratio * n)`` (at least 1): the rows of the sketch of an ``n``-row input."""
    return max(1, math.ceil(ratio * n))


def draw_sketch(n: int, k: int, kind: str, generator: torch.Generator, *, dtype: torch.dtype,
                device: torch.device | str | None = None) -> Tensor:
    """A random ``S`` of shape ``(n, k)`` with ``E[S S^T] = I_n`` (Gaussian or Rademacher)."""
    if kind == "gaussian":
        return torch.randn(n, k, generator=generator, dtype=dtype, device=device) / math.sqrt(k)
    if kind == "rademacher":
        signs = torch.randint(0, 2, (n, k), generator=generator, device=device).to(dtype)
        return (2 * signs - 1) / math.sqrt(k)
    raise ConfigError(f"unknown sketch {kind!r}; use one of {', '.join(SKETCHES)}")


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class SketchedLinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` whose backward estimates ``dL/dW`` from the saved sketch ``S^T x``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, ratio: float, kind: str,
                seed: int) -> Tensor:
        y = F.linear(x, weight, bias)
        rows = x.reshape(-1, x.shape[-1])
        n = rows.shape[0]
        k = sketch_rows(n, ratio)
        sketch = None
        if ctx.needs_input_grad[1]:
            s = draw_sketch(n, k, kind, _generator(seed, x.device), dtype=x.dtype, device=x.device)
            sketch = s.T @ rows  # (k, in): all that is kept of x
        ctx.save_for_backward(sketch, weight)
        ctx.meta = (n, k, kind, seed, bias is not None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        sketch, weight = ctx.saved_tensors
        n, k, kind, seed, has_bias = ctx.meta
        gy = grad_y.reshape(-1, grad_y.shape[-1])
        grad_x = grad_y @ weight if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            s = draw_sketch(n, k, kind, _generator(seed, grad_y.device), dtype=sketch.dtype, device=grad_y.device)
            grad_w = (s.T @ gy.to(sketch.dtype)).T @ sketch  # (S^T G)^T (S^T X) = G^T S S^T X
            grad_w = grad_w.to(weight.dtype)
        grad_b = gy.sum(0) if has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None


def sketched_linear(x: Tensor, weight: Tensor, bias: Tensor | None, *, ratio: float, sketch: str = "gaussian",
                    seed: int = 0) -> Tensor:
    """Functional form: ``F.linear(x, weight, bias)`` with the sketched weight gradient."""
    return SketchedLinearFunction.apply(x, weight, bias, float(ratio), sketch, int(seed))


class SketchedLinear(nn.Linear):
    r"""``nn.Linear`` whose weight gradient is the randomized estimate ``G^T S S^T X`` (see the module
    docstring): the forward pass keeps ``S^T X`` (``ceil(sketch_ratio * B)`` rows) instead of ``X``.

    Options: ``sketch_ratio`` (``rho = B_proj / B`` in (0, 1]), ``sketch`` ("gaussian" or
    "rademacher"), ``seed`` (of the sketches; each forward pass in training draws a fresh one),
    ``bias``, ``device``, ``dtype``. ``reference(x)`` is the exact Linear.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, sketch_ratio: float = 0.5,
                 sketch: str = "gaussian", seed: int = 0, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        if not 0.0 < float(sketch_ratio) <= 1.0:
            raise ConfigError(f"SketchedLinear: sketch_ratio must be in (0, 1] (B_proj / B), got {sketch_ratio}")
        if sketch not in SKETCHES:
            raise ConfigError(f"SketchedLinear: unknown sketch {sketch!r}; use one of {', '.join(SKETCHES)}")
        if int(seed) < 0:
            raise ConfigError(f"SketchedLinear: seed must be >= 0, got {seed}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.sketch_ratio = float(sketch_ratio)
        self.sketch = sketch
        self.seed = int(seed)
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64, device=device))

    def _next_seed(self) -> int:
        seed = (self.seed * _MIX + int(self.draws)) % (2**63)
        self.draws += 1
        return seed

    def forward(self, x: Tensor) -> Tensor:
        check_last_dim(self, x, self.in_features, "in_features")
        if not (self.training and torch.is_grad_enabled() and self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        return SketchedLinearFunction.apply(x, self.weight, self.bias, self.sketch_ratio, self.sketch,
                                            self._next_seed())

    def reference(self, x: Tensor) -> Tensor:
        """The exact Linear: same output, exact gradients (it saves ``x``)."""
        return F.linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, **options: Any) -> SketchedLinear:
        """A SketchedLinear with ``linear``'s parameters (copied)."""
        out = cls(linear.in_features, linear.out_features, linear.bias is not None,
                  device=linear.weight.device, dtype=linear.weight.dtype, **options)
        with torch.no_grad():
            out.weight.copy_(linear.weight)
            if linear.bias is not None:
                out.bias.copy_(linear.bias)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sketch_ratio={self.sketch_ratio}, sketch={self.sketch!r}"


def sketch_linears(model: nn.Module, *, sketch_ratio: float, sketch: str = "gaussian", seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Linear`` replaced by a ``SketchedLinear`` with its
    parameters; layer ``i`` (in ``named_modules`` order) gets seed ``seed + i``. The input is untouched."""
    if isinstance(model, nn.Linear) and not isinstance(model, SketchedLinear):
        return SketchedLinear.from_linear(model, sketch_ratio=sketch_ratio, sketch=sketch, seed=seed)
    out = copy.deepcopy(model)
    targets = [(name, m) for name, m in out.named_modules()
               if isinstance(m, nn.Linear) and not isinstance(m, SketchedLinear)]
    for i, (name, m) in enumerate(targets):
        parent = out.get_submodule(name.rpartition(".")[0]) if "." in name else out
        setattr(parent, name.rpartition(".")[2],
                SketchedLinear.from_linear(m, sketch_ratio=sketch_ratio, sketch=sketch, seed=seed + i))
    return out
