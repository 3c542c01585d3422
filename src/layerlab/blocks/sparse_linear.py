r"""A Linear layer with a fixed sparse weight whose forward and backward touch only the nonzeros.

Paper: Nikdan, Pegolotti, Iofinova, Kurtic & Alistarh, "SparseProp: Efficient Sparse
Backpropagation for Faster Training of Neural Networks", ICML 2023, arXiv:2302.04852.

For ``Y = X Wᵀ + b`` with ``X`` of shape ``(B, N)`` (every leading dimension flattened into the
``B`` rows) and ``W`` of shape ``(M, N)`` with a fixed support ``Ω = {(i, j): W_ij ≠ 0}`` stored in
CSR (row pointers, column indices, values ``w_k`` in row-major order), backpropagation needs

    forward:   Y_{b,i} = Σ_{j: (i,j) ∈ Ω} W_ij X_{b,j} + b_i          (sparse × dense)
    backward:  ∂L/∂X_{b,j} = Σ_{i: (i,j) ∈ Ω} W_ij ∂L/∂Y_{b,i}         (Wᵀ sparse × dense)
               ∂L/∂W_ij = Σ_b ∂L/∂Y_{b,i} X_{b,j}   for (i, j) ∈ Ω only  (sampled dense-dense product)
               ∂L/∂b_i = Σ_b ∂L/∂Y_{b,i}

each in time linear in |Ω| (times B), where the dense masked layer ``Y = X (W ⊙ M)ᵀ + b`` spends
``B M N`` on each product and computes the weight gradient everywhere only to mask it. The paper's
Algorithm 1 does the backward in one pass over the CSR rows, vectorised over the batch with AVX2
(its C++ backend); here the three products are PyTorch's CSR kernels: ``torch.sparse.mm`` with
``W`` and with ``Wᵀ`` (a second CSR index of the same values, ``values[t_perm]``) and
``torch.sparse.sampled_addmm`` for the weight gradient. The result equals the dense masked layer's
output and gradients (at Ω; zero elsewhere by construction) up to the order of summation: tested
to 1e-10 in float64, and with ``gradcheck``.

What was verified: the abstract (exact backpropagation specialised to sparse weights, linear in
the density, speed-ups for sparse transfer/fine-tuning of already-sparse networks and for sparse
training from scratch, on CPU) and the authors' code (``sparseprop/modules/functions.py``: the
weight kept as CSR values with row pointers and column indices, the forward ``O = W X`` over the
transposed input, the backward returning the input gradient and the gradient of the values only;
``sparseprop/utils.py`` swaps a Linear for the sparse one when it is at least 80% sparse and faster).

Forms: ``SparseLinear.forward(x, mode="csr")`` is the fast form; ``mode="dense"`` is the reference
form, the dense weight rebuilt from the values (its gradient is the dense masked one at Ω).
``MaskedLinear`` is the usual dense masked layer (a dense weight multiplied by a mask buffer at
every forward), the baseline the speed-up is measured against (``benchmarks/compress_sparseprop.py``).

Use: ``sparseprop_linears(model)`` returns a copy of a pruned model whose ``nn.Linear`` layers
(at least ``min_sparsity`` zeros) are ``SparseLinear`` with the pruned support, for fine-tuning
that keeps the mask; ``masked_linears(model)`` the same with ``MaskedLinear`` (the reference).

Shape: ``(*, in_features) -> (*, out_features)``. Initialization (``SparseLinear(in, out, mask)``):
the kept weights and the bias ~ U(-1/sqrt(in_features), 1/sqrt(in_features)), the distribution of
a masked ``nn.Linear``. Dtypes: float32 and float64 run the CSR kernels; other floating dtypes
(bfloat16, float16, which PyTorch's CPU CSR kernels lack) are computed in float32 and cast back.
Memory: values plus int64 indices (``col`` and the transposed ``t_col``, ``t_perm``: three per
nonzero), so storage only falls below the dense weight's at densities under about 1/4 (float64)
or 1/7 (float32 with int64 indices; the paper's backend uses 32-bit indices).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..errors import ConfigError, ShapeError

MODES = ("csr", "dense")
_CSR_DTYPES = (torch.float32, torch.float64)


def csr_structure(mask: Tensor) -> dict[str, Tensor]:
    """CSR index of a bool ``mask`` (M, N) and of its transpose: ``crow`` (M+1), ``col`` (nnz) in
    row-major order; ``t_crow`` (N+1), ``t_col`` (nnz) and ``t_perm`` (nnz) with
    ``values_of_transpose = values[t_perm]``."""
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ConfigError(f"a sparsity mask is a 2-D bool tensor (out_features, in_features); got "
                          f"{mask.dtype} of shape {tuple(mask.shape)}")
    m, n = mask.shape
    rows, cols = mask.nonzero(as_tuple=True)  # row-major order
    crow = torch.zeros(m + 1, dtype=torch.int64, device=mask.device)
    crow[1:] = torch.bincount(rows, minlength=m).cumsum(0)
    t_perm = torch.argsort(cols * m + rows)  # column-major order of the same entries
    t_crow = torch.zeros(n + 1, dtype=torch.int64, device=mask.device)
    t_crow[1:] = torch.bincount(cols, minlength=n).cumsum(0)
    return {"crow": crow, "col": cols.to(torch.int64), "t_crow": t_crow, "t_col": rows[t_perm].to(torch.int64),
            "t_perm": t_perm}


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # PyTorch warns at every CSR construction that the format is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, dtype=values.dtype, device=values.device,
                                       check_invariants=False)


class SparseLinearFunction(torch.autograd.Function):
    """``Y = X Wᵀ + b`` with ``W`` given by CSR values; gradients for ``X``, the values and ``b``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, bias: Tensor | None, crow: Tensor, col: Tensor,
                t_crow: Tensor, t_col: Tensor, t_perm: Tensor, out_features: int) -> Tensor:
        w = _csr(crow, col, values, (out_features, x.shape[1]))
        y = torch.sparse.mm(w, x.T).T  # (B, M)
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(x, values, crow, col, t_crow, t_col, t_perm)
        ctx.has_bias = bias is not None
        ctx.out_features = out_features
        return y.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, values, crow, col, t_crow, t_col, t_perm = ctx.saved_tensors
        m, n = ctx.out_features, x.shape[1]
        dx = dvalues = dbias = None
        if ctx.needs_input_grad[0]:
            wt = _csr(t_crow, t_col, values[t_perm], (n, m))
            dx = torch.sparse.mm(wt, dy.T).T.contiguous()  # dL/dX = dL/dY W
        if ctx.needs_input_grad[1]:
            support = _csr(crow, col, values, (m, n))
            dvalues = torch.sparse.sampled_addmm(support, dy.T, x, beta=0.0, alpha=1.0).values()  # (dY^T X) at Omega
        if ctx.has_bias and ctx.needs_input_grad[2]:
            dbias = dy.sum(0)
        return dx, dvalues, dbias, None, None, None, None, None, None


def sparse_linear(x: Tensor, values: Tensor, bias: Tensor | None, index: dict[str, Tensor],
                  out_features: int) -> Tensor:
    """The fast form on a 2-D input ``x`` (B, N): CSR kernels in float32/float64, else via float32."""
    if x.dtype in _CSR_DTYPES and values.dtype == x.dtype:
        return SparseLinearFunction.apply(x, values, bias, index["crow"], index["col"], index["t_crow"],
                                          index["t_col"], index["t_perm"], out_features)
    wide = torch.float32 if x.dtype not in _CSR_DTYPES else x.dtype
    y = SparseLinearFunction.apply(x.to(wide), values.to(wide), None if bias is None else bias.to(wide),
                                   index["crow"], index["col"], index["t_crow"], index["t_col"], index["t_perm"],
                                   out_features)
    return y.to(x.dtype)


class SparseLinear(nn.Module):
    r"""``y = x Wᵀ + b`` with ``W`` fixed-sparse: parameter ``values`` (the nonzeros, CSR order),
    buffers ``crow``, ``col``, ``t_crow``, ``t_col``, ``t_perm`` (int64). See the module docstring.

    ``mask``: bool (out_features, in_features), the support. ``forward(x, mode="csr" | "dense")``.
    """

    def __init__(self, in_features: int, out_features: int, mask: Tensor, *, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"SparseLinear needs in_features, out_features >= 1; got {in_features}, {out_features}")
        if tuple(mask.shape) != (out_features, in_features):
            raise ConfigError(f"mask must have shape (out_features, in_features) = ({out_features}, {in_features}); "
                              f"got {tuple(mask.shape)}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        for k, v in csr_structure(mask.to(device=device)).items():
            self.register_buffer(k, v)
        nnz = int(self.col.numel())
        bound = 1.0 / math.sqrt(in_features)
        factory = {"device": device, "dtype": dtype}
        self.values = nn.Parameter(torch.empty(nnz, **factory).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features, **factory).uniform_(-bound, bound)) if bias else None

    @classmethod
    def from_dense(cls, linear: nn.Linear, mask: Tensor | None = None) -> "SparseLinear":
        """The SparseLinear equal to ``linear`` with its weight restricted to ``mask`` (default: its
        nonzeros, the support a pruned layer has); the values and bias are copies."""
        w = linear.weight.detach()
        mask = (w != 0) if mask is None else mask.to(device=w.device, dtype=torch.bool)
        out = cls(linear.in_features, linear.out_features, mask, bias=linear.bias is not None,
                  device=w.device, dtype=w.dtype)
        with torch.no_grad():
            out.values.copy_(w[mask])  # boolean indexing is row-major: the CSR order
            if linear.bias is not None:
                out.bias.copy_(linear.bias.detach())
        return out

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def density(self) -> float:
        return self.nnz / (self.in_features * self.out_features)

    def index(self) -> dict[str, Tensor]:
        return {"crow": self.crow, "col": self.col, "t_crow": self.t_crow, "t_col": self.t_col, "t_perm": self.t_perm}

    def rows(self) -> Tensor:
        """The row index of each stored value (CSR order)."""
        return torch.repeat_interleave(torch.arange(self.out_features, device=self.crow.device), self.crow.diff())

    def dense_weight(self) -> Tensor:
        """W as a dense (out, in) tensor, differentiable in ``values``."""
        w = self.values.new_zeros(self.out_features, self.in_features)
        return w.index_put((self.rows(), self.col), self.values)

    def mask(self) -> Tensor:
        m = torch.zeros(self.out_features, self.in_features, dtype=torch.bool, device=self.col.device)
        m[self.rows(), self.col] = True
        return m

    def forward(self, x: Tensor, mode: str = "csr") -> Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(f"SparseLinear expects input of shape (..., in_features = {self.in_features}); "
                             f"got {tuple(x.shape)}")
        if mode == "dense":
            return F.linear(x, self.dense_weight(), self.bias)
        if mode != "csr":
            raise ConfigError(f"SparseLinear mode must be one of {MODES}, got {mode!r}")
        lead = x.shape[:-1]
        y = sparse_linear(x.reshape(-1, self.in_features), self.values, self.bias, self.index(), self.out_features)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz} "
                f"(density {self.density:.3g}), bias={self.bias is not None}")


class MaskedLinear(nn.Linear):
    """The dense masked reference: ``y = x (W ⊙ M)ᵀ + b``, ``M`` a bool buffer ``mask``; the weight is
    stored dense and its gradient is computed dense, then masked by the product."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor, *, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if tuple(mask.shape) != (out_features, in_features) or mask.dtype != torch.bool:
            raise ConfigError(f"mask must be a bool tensor of shape ({out_features}, {in_features}); got "
                              f"{mask.dtype} {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(device=self.weight.device).clone())
        with torch.no_grad():
            self.weight.mul_(self.mask)

    @classmethod
    def from_dense(cls, linear: nn.Linear, mask: Tensor | None = None) -> "MaskedLinear":
        w = linear.weight.detach()
        mask = (w != 0) if mask is None else mask.to(device=w.device, dtype=torch.bool)
        out = cls(linear.in_features, linear.out_features, mask, bias=linear.bias is not None,
                  device=w.device, dtype=w.dtype)
        with torch.no_grad():
            out.weight.copy_(w * mask)
            if linear.bias is not None:
                out.bias.copy_(linear.bias.detach())
        return out

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def _swap(model: nn.Module, make: Any, min_sparsity: float) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected an nn.Module, got {type(model).__name__}")
    if not 0.0 <= min_sparsity <= 1.0:
        raise ConfigError(f"min_sparsity must be in [0, 1] (the fraction of zero weights a layer needs "
                          f"to be swapped), got {min_sparsity}")
    out = copy.deepcopy(model)
    names = [n for n, m in out.named_modules() if type(m) is nn.Linear
             and float((m.weight.detach() == 0).float().mean()) >= min_sparsity]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer with at least {min_sparsity:.0%} zero "
                          f"weights; prune it first (e.g. layerlab.compress.magnitude) or lower min_sparsity")
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, make(out.get_submodule(name)))
    return out


def sparseprop_linears(model: nn.Module, *, min_sparsity: float = 0.0) -> nn.Module:
    """A copy of (pruned) ``model`` whose ``nn.Linear`` layers with at least ``min_sparsity`` zero
    weights are ``SparseLinear`` on their nonzero support (the paper swaps at >= 80% where faster)."""
    return _swap(model, SparseLinear.from_dense, min_sparsity)


def masked_linears(model: nn.Module, *, min_sparsity: float = 0.0) -> nn.Module:
    """The same layers as ``sparseprop_linears`` swapped for the dense masked reference ``MaskedLinear``."""
    return _swap(model, MaskedLinear.from_dense, min_sparsity)


__all__ = ["MaskedLinear", "SparseLinear", "SparseLinearFunction", "csr_structure", "masked_linears",
           "sparse_linear", "sparseprop_linears"]
