r"""The Hessian of a training loss as a linear operator, and the curvature instruments built on it:
extreme eigenvalues, trace, spectral density, sharpness and the edge of stability.

The loss is the mean over all examples of the list ``batches``:
:math:`L(\theta) = \sum_{b} w_b\, \ell(\theta; \text{batch}_b)` where ``loss_fn(model, batch_b)``
:math:`= \ell_b` is a mean over its batch and :math:`w_b = n_b / \sum_c n_c` weighs it by its size
:math:`n_b` (`batch_size`), so batches of 64 and 32 examples give the Hessian of the 96 examples
pooled; ``weights=`` overrides the sizes (e.g. the number of scored tokens each mean runs over).
The Hessian is :math:`H = \nabla^2_\theta L` with respect to the trainable parameters, flattened in
``model.named_parameters()`` order, so ``H`` is ``(P, P)`` with ``P`` the number of selected
scalars. ``params`` (names or name prefixes such as ``"blocks.0."``) picks a per-layer block
:math:`H_{SS}` (rows and columns of the chosen parameters; the others are held fixed). The model is
evaluated in eval mode (no dropout, no batch-norm statistics updates).

The eigenvalue, trace and density methods need only products ``H v`` and live in
`layerlab.lens.krylov` (Lanczos, Hutchinson/Hutch++, stochastic Lanczos quadrature, with their
papers); this module supplies the products and the quantities of the papers below.

Papers and the quantities taken from them
-----------------------------------------
* Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1), 1994 (no
  arXiv). :math:`Hv = \frac{\partial}{\partial r}\nabla L(\theta + r v)\big|_{r=0}`, i.e. a
  forward-mode derivative of the reverse-mode gradient, at the cost of a few gradients and without
  forming ``H``. Here: ``torch.func.jvp(torch.func.grad(L), (θ,), (v,))`` (forward-over-reverse,
  the cheapest form). Where an operator has no forward-mode rule (a custom
  ``autograd.Function`` without ``jvp``, some fused kernels), ``mode="auto"`` falls back to
  reverse-over-reverse, ``torch.func.vjp(grad(L), θ)`` applied to ``v`` (valid because ``H`` is
  symmetric: the vector-Jacobian product of the gradient is :math:`H^\top v = Hv`).
  ``torch.func.functional_call`` substitutes the parameters, so no ``.grad`` field is touched.
  ``mode="double-backward"`` takes the same reverse-over-reverse product with plain autograd:
  ``g = autograd.grad(L, θ, create_graph=True)`` once, then ``Hv = autograd.grad(g, θ, v)`` on
  that kept graph for every product while the parameters are unchanged. It trades memory (the
  graph of ``g`` stays alive, activations included) for time: a product is one backward pass
  through ``g``'s graph, about one training step, where each ``torch.func`` product redoes the
  forward and backward (benchmarks/lens.py: 3.6 ms against 12 ms for forward-over-reverse on
  its classifier run, CPU). ``"auto"`` takes it first.
* Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs at
  the Edge of Stability", ICLR 2021, arXiv:2103.00065. Sharpness :math:`= \lambda_{\max}(H)`
  (the largest *algebraic* eigenvalue); gradient descent with step :math:`\eta` on a quadratic is
  stable iff :math:`\lambda_{\max} < 2/\eta`.
* Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl & Gilmer,
  "Adaptive Gradient Methods at the Edge of Stability", 2022, arXiv:2207.14484. Adam's step is
  :math:`w_{t+1} = w_t - \eta P_t^{-1} m_t` with the (un-debiased) first moment :math:`m_t` and
  :math:`P_t = (1-\beta_1^t)\,\operatorname{diag}(\sqrt{\hat v_t} + \epsilon)`; the relevant
  quantity is the preconditioned sharpness :math:`\lambda_{\max}(P_t^{-1} H)`, whose stability
  threshold is :math:`(2 + 2\beta_1)/((1-\beta_1)\eta)` (= 38/η for β1 = 0.9).
* Yao, Gholami, Keutzer & Mahoney, "PyHessian: Neural Networks Through the Lens of the Hessian",
  2020, arXiv:1912.07145 (context: the same three instruments, with power iteration).

Units: eigenvalues, traces and moments are in units of the loss per squared parameter unit;
``trace`` is :math:`\operatorname{tr} H` (not divided by ``P``); ``SpectralDensity.moment(k)``
is :math:`\operatorname{tr}(H^k)/P`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..errors import ConfigError, ShapeError, unknown_name
import layerlab.lens.krylov as krylov  # the submodule itself, not the lens package (no cycle through lens/__init__)
from ._util import LossFn, batch_size, batch_weights, select_parameters, side_effect_free  # noqa: F401 (batch_size re-exported)
from .krylov import TRACE_METHODS, WHICH, LanczosResult, SpectralDensity  # noqa: F401 (re-exported)

__all__ = [
    "HessianOperator",
    "LanczosResult",
    "SpectralDensity",
    "batch_size",
    "hvp",
    "top_eigenvalues",
    "top_eigenpairs",
    "trace",
    "density",
    "sharpness",
    "preconditioned_sharpness",
    "adam_preconditioner",
    "stability_threshold",
    "edge_of_stability",
]

MODES = ("auto", "double-backward", "forward-over-reverse", "reverse-over-reverse")


# ----------------------------------------------------------------------------------------------
# Batches, their weights, and the functional loss


def _check_batches(batches: Any) -> list:
    if not isinstance(batches, list):
        raise ConfigError(
            f"batches must be a list of batches, got {type(batches).__name__}; "
            "wrap a single batch as [batch]"
        )
    if not batches:
        raise ConfigError("batches is empty; pass at least one batch")
    return batches


class _Bound(nn.Module):
    """`loss_fn(model, batch)` as a module, so `functional_call` can swap the model's parameters
    (including those `loss_fn` reaches through submodules, not only `model.forward`)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "_loss_fn", loss_fn)  # not registered, even if it is a Module

    def forward(self, batch: Any) -> Tensor:
        return self._loss_fn(self.model, batch)


def _scalar(out: Any) -> Tensor:
    if not isinstance(out, Tensor) or out.dim() != 0:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ShapeError(f"loss_fn must return a scalar tensor (a mean over the batch), "
                         f"got {shape}; reduce it with .mean()")
    return out


class HessianOperator:
    """The Hessian of the mean loss over `batches` as a linear operator on flat vectors.

    Build it once and apply it many times: ``matvec(v)`` for ``(P,) -> (P,)``, ``matmat(V)``
    for ``(P, m) -> (P, m)`` (``torch.func.vmap`` over the products, or in double-backward mode
    one backward pass batched over the columns, in chunks of ``chunk_size`` columns; falls back
    to a loop where vmap is unsupported), ``dense()`` for the
    full ``(P, P)`` matrix of a small model. Products are computed in the parameters' dtype on
    their device; inputs of another dtype are cast. The model's parameters are read at every
    product (the operator follows the model if it is trained meanwhile) and never modified.

    Attributes: ``names`` (selected parameter names, model order), ``slices`` (name -> slice of
    the flat vector), ``dim`` (``P``), ``dtype``, ``device``, ``mode`` (the product form in use;
    ``"auto"`` resolves on the first product to double-backward, or, if some operation has no
    double backward, to forward-over-reverse and then reverse-over-reverse; ``fallback_reason``
    then holds the error). Under ``"auto"`` a ``matmat`` of several columns still takes
    forward-over-reverse under vmap where it works: faster for blocks, slower for one column.

    ``weights``: one number per batch, the weight of its mean loss (normalized to sum 1); by
    default the batch sizes (`batch_size`), so the loss is the mean over all examples; ``weights``
    holds them as float64.

    ``retain_graph`` (double-backward only): keep each batch's gradient graph between products,
    rebuilt when any parameter or buffer of the model has changed (a new tensor, or an in-place
    update such as an optimizer step). None keeps it when there is one batch: a graph holds that
    batch's activations, so many batches would hold them all.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list,
        *,
        params: Sequence[str] | str | None = None,
        mode: str = "auto",
        chunk_size: int | None = 32,
        retain_graph: bool | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.batches = _check_batches(batches)
        self.weights = batch_weights(self.batches, weights)
        self._w = self.weights.tolist()
        if mode not in MODES:
            raise unknown_name("Hessian-vector product mode", mode, MODES)
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.mode = mode
        self.fallback_reason: str | None = None
        self.chunk_size = chunk_size
        self.names = select_parameters(model, params)
        named = dict(model.named_parameters())
        selected = [named[n] for n in self.names]
        self.shapes = [p.shape for p in selected]
        self.dtypes = [p.dtype for p in selected]
        numels = [p.numel() for p in selected]
        self.dim = int(sum(numels))
        dtype = selected[0].dtype
        for p in selected[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        self.dtype = dtype
        self.device = selected[0].device
        ends = torch.tensor(numels).cumsum(0).tolist()
        self.slices = {n: slice(e - k, e) for n, e, k in zip(self.names, ends, numels)}
        self._bound = _Bound(model, loss_fn)
        self._vmap_ok = True
        self._auto, self._forward_ok = mode == "auto", True
        self.retain_graph = len(self.batches) == 1 if retain_graph is None else bool(retain_graph)
        self._graphs: dict[int, tuple[tuple, tuple[Tensor | None, ...]]] = {}  # batch -> (state key, gradient)

    def __repr__(self) -> str:
        return (f"HessianOperator(dim={self.dim}, params={len(self.names)}, dtype={self.dtype}, "
                f"mode={self.mode!r}, batches={len(self.batches)})")

    # -- the functional loss and its products ---------------------------------------------------

    def _tensors(self) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
        selected = set(self.names)
        named = dict(self.model.named_parameters())
        sel = tuple(named[n].detach() for n in self.names)
        fixed = {"model." + n: p.detach() for n, p in named.items() if n not in selected}
        return sel, fixed

    def _loss(self, sel: tuple[Tensor, ...], fixed: dict[str, Tensor], batch: Any) -> Tensor:
        values = dict(fixed)
        values.update({"model." + n: t for n, t in zip(self.names, sel)})
        return _scalar(functional_call(self._bound, values, (batch,)))

    def _unflatten(self, v: Tensor) -> tuple[Tensor, ...]:
        """A flat (P,) vector as parameter-shaped tensors; (P, c) columns as (c, *shape) each."""
        if v.dim() == 2:
            return tuple(v[s].T.reshape(v.shape[1], *shape).to(dt)
                         for s, shape, dt in zip(self.slices.values(), self.shapes, self.dtypes))
        v = v.contiguous()  # a column of a block: one gather here, not a strided copy per parameter
        return tuple(v[s].reshape(shape).to(dt)
                     for s, shape, dt in zip(self.slices.values(), self.shapes, self.dtypes))

    def _state_key(self) -> tuple:
        """Identifies the values of every parameter and buffer: an in-place update bumps a
        tensor's version, a replacement changes its identity or storage."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return tuple((id(t), t.data_ptr(), t._version) for t in tensors)

    def _gradient_graph(self, i: int, batch: Any, params: list[Tensor]) -> tuple[Tensor | None, ...]:
        """∇ℓ_i with its graph (create_graph); None where ℓ_i does not depend on a parameter
        (its Hessian rows are zero)."""
        key = self._state_key() if self.retain_graph else None
        if key is not None and i in self._graphs and self._graphs[i][0] == key:
            return self._graphs[i][1]
        with torch.enable_grad():
            loss = _scalar(self.loss_fn(self.model, batch))
            g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        g = tuple(t if t is not None and t.requires_grad else None for t in g)
        if key is not None:
            self._graphs[i] = (key, g)
        return g

    def _double_backward(self, v: Tensor) -> Tensor:
        """``H v`` for ``v`` (P,), or ``H V`` for ``V`` (P, c) in one backward pass batched over
        the columns (autograd's ``is_grads_batched``, a vmap over the backward)."""
        named = dict(self.model.named_parameters())
        params = [named[n] for n in self.names]
        batched = v.dim() == 2
        c = v.shape[1] if batched else 1
        tangent = self._unflatten(v)
        total = torch.zeros(c, self.dim, dtype=self.dtype, device=self.device)
        for i, batch in enumerate(self.batches):
            g = self._gradient_graph(i, batch, params)
            live = [j for j, t in enumerate(g) if t is not None]
            if not live:
                continue
            with torch.enable_grad():
                out = torch.autograd.grad([g[j] for j in live], params, [tangent[j] for j in live],
                                          retain_graph=True, allow_unused=True, is_grads_batched=batched)
            total.add_(torch.cat([(torch.zeros(c, p.numel(), dtype=self.dtype, device=self.device) if o is None
                                   else o.reshape(c, -1).to(self.dtype)) for o, p in zip(out, params)], dim=1),
                       alpha=self._w[i])
        return total.T if batched else total[0]

    def _product(self, v: Tensor, mode: str) -> Tensor:
        if mode == "double-backward":
            return self._double_backward(v)
        sel, fixed = self._tensors()
        tangent = self._unflatten(v)
        total = None
        for w, batch in zip(self._w, self.batches):
            def gradient(s: tuple[Tensor, ...], batch: Any = batch) -> tuple[Tensor, ...]:
                return grad(lambda s_: self._loss(s_, fixed, batch))(s)

            if mode == "forward-over-reverse":
                out = jvp(gradient, (sel,), (tangent,))[1]
            else:
                out = vjp(gradient, sel)[1](tangent)[0]
            flat = torch.cat([o.reshape(-1).to(self.dtype) for o in out]) * w
            total = flat if total is None else total + flat
        return total

    def _apply(self, v: Tensor) -> Tensor:
        if self.mode != "auto":
            return self._product(v, self.mode)
        reasons = []
        # double backward is the fastest; where some op has no double backward, its forward-mode
        # derivative may still exist, and reverse-over-reverse is the last resort
        for mode in ("double-backward", "forward-over-reverse", "reverse-over-reverse"):
            try:
                out = self._product(v, mode)
            except (RuntimeError, NotImplementedError) as err:
                self._graphs.clear()
                if mode == "reverse-over-reverse":
                    raise
                reasons.append(f"{mode}: {type(err).__name__}: {err}")
                continue
            self.mode = mode
            self.fallback_reason = "; ".join(reasons) or None
            return out
        raise AssertionError("unreachable")

    # -- public products ------------------------------------------------------------------------

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a flat ``v`` of shape ``(P,)``; returns ``(P,)`` in ``self.dtype``."""
        if v.shape != (self.dim,):
            raise ShapeError(f"v must have shape ({self.dim},) (the flattened selected "
                             f"parameters), got {tuple(v.shape)}")
        with side_effect_free(self.model):
            return self._apply(v.to(device=self.device, dtype=self.dtype))

    def matmat(self, V: Tensor) -> Tensor:
        """``H V`` for ``V`` of shape ``(P, m)``; returns ``(P, m)`` in ``self.dtype``."""
        if V.dim() != 2 or V.shape[0] != self.dim:
            raise ShapeError(f"V must have shape ({self.dim}, m), got {tuple(V.shape)}")
        V = V.to(device=self.device, dtype=self.dtype)
        if V.shape[1] == 0:
            return V.clone()
        with side_effect_free(self.model):
            if self.mode == "auto":  # resolve the product form outside vmap
                first = self._apply(V[:, 0])
                if V.shape[1] == 1:
                    return first[:, None]
                return torch.cat([first[:, None], self._matmat(V[:, 1:])], dim=1)
            return self._matmat(V)

    def _matmat(self, V: Tensor) -> Tensor:
        if V.shape[1] == 1:  # vmap over one column costs more than the product itself on small models
            return self._apply(V[:, 0])[:, None]
        # Many columns: "auto" takes forward-over-reverse under vmap where it works, which beat a
        # backward batched over the columns (benchmarks/lens.py models, 20 columns: 454 against
        # 603 ms on the MLP, 1.50 against 2.10 s on attention; a kept graph wins for one column).
        forms = [self.mode]
        if self._auto and self.mode == "double-backward" and self._forward_ok:
            forms.insert(0, "forward-over-reverse")
        for form in forms if self._vmap_ok else []:
            try:
                return self._vmapped(V, form)
            except (RuntimeError, NotImplementedError):
                if form != self.mode:
                    self._forward_ok = False  # no forward-mode rule: the mode's own batched form
                else:
                    self._vmap_ok = False  # e.g. data-dependent control flow; products one by one
        return torch.stack([self._apply(V[:, i]) for i in range(V.shape[1])], dim=1)

    def _vmapped(self, V: Tensor, form: str) -> Tensor:
        """``H V`` by product form `form`, batched over the columns in chunks of ``chunk_size``."""
        if form == "double-backward":
            step = self.chunk_size or V.shape[1]
            return torch.cat([self._double_backward(V[:, i: i + step]) for i in range(0, V.shape[1], step)], dim=1)
        return vmap(lambda v: self._product(v, form), in_dims=1, out_dims=1, chunk_size=self.chunk_size)(V)

    def dense(self, *, max_dim: int = 4096) -> Tensor:
        """The full Hessian ``(P, P)`` (column ``i`` is ``H e_i``), for ``P <= max_dim``."""
        if self.dim > max_dim:
            raise ConfigError(f"dense Hessian of dimension {self.dim} exceeds max_dim={max_dim}; "
                              "select a block with params=... or raise max_dim")
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return self.matmat(eye)

    # -- instruments on this operator (no closure rebuilt between them) ------------------------

    def top_eigenvalues(self, k: int = 1, **kwargs: Any) -> Tensor | tuple[Tensor, Tensor]:
        """See `top_eigenvalues` (`krylov.top_eigenvalues` on this operator)."""
        return krylov.top_eigenvalues(self, k, **kwargs)

    def top_eigenpairs(self, k: int = 1, **kwargs: Any) -> LanczosResult:
        """See `top_eigenpairs` (`krylov.lanczos` on this operator)."""
        return krylov.lanczos(self, k, **kwargs)

    def trace(self, **kwargs: Any) -> tuple[float, float]:
        """See `trace` (`krylov.trace` on this operator)."""
        return krylov.trace(self, **kwargs)

    def density(self, **kwargs: Any) -> SpectralDensity:
        """See `density` (`krylov.density` on this operator)."""
        return krylov.density(self, **kwargs)


class _Preconditioned:
    """``D (H + diag(c)) D`` with ``D = diag(d)``: similar to ``P^{-1}(H + diag(c))`` for
    ``d = P^{-1/2}``, symmetric, so Lanczos applies."""

    def __init__(self, op: HessianOperator, d: Tensor, shift: Tensor) -> None:
        self.op, self.dim, self.device, self.dtype = op, op.dim, op.device, op.dtype
        self.d = d.to(device=op.device, dtype=torch.float64)
        self.shift = shift.to(device=op.device, dtype=torch.float64)

    def matmat(self, V: Tensor) -> Tensor:
        U = self.d[:, None] * V.to(torch.float64)
        return self.d[:, None] * (self.op.matmat(U).to(torch.float64) + self.shift[:, None] * U)


# ----------------------------------------------------------------------------------------------
# Public functions of (model, loss_fn, batches)


def hvp(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    v: Tensor,
    *,
    params: Sequence[str] | str | None = None,
    mode: str = "auto",
    weights: Sequence[float] | None = None,
) -> Tensor:
    """The Hessian-vector product ``H v`` of the mean loss over ``batches``.

    ``v``: flat ``(P,)`` over the selected trainable parameters (``named_parameters`` order).
    Returns ``(P,)`` in the parameters' dtype. Build a `HessianOperator` for many products.
    """
    return HessianOperator(model, loss_fn, batches, params=params, mode=mode, weights=weights).matvec(v)


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    k: int = 1,
    *,
    params: Sequence[str] | str | None = None,
    which: str = "largest",
    max_iter: int = 100,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    return_vectors: bool = False,
    krylov_dtype: torch.dtype | None = None,
    weights: Sequence[float] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The ``k`` extreme eigenvalues of ``H`` by Lanczos with full reorthogonalization
    (`krylov.lanczos`, which documents the method and its options).

    ``which``: ``"largest"`` (algebraic, descending; the sharpness of the edge of stability is
    the first), ``"smallest"`` (algebraic, ascending; negative ones show saddle directions) or
    ``"magnitude"`` (descending ``|λ|``, what power iteration finds). Lanczos stops when every
    wanted Ritz pair has residual ``||H y - θ y|| <= tol · max|θ|`` (default
    ``tol = max(1e-10, 100 eps(dtype))``) and, for ``k >= 2``, a further sequence has confirmed
    the multiplicities, or after ``min(max_iter, P)`` products. It warns (RuntimeWarning) only
    when what it returns has not converged: the values, when their error bound
    ``min(r, r²/gap)`` exceeds ``tol · max|θ|``; with ``return_vectors`` also the vectors,
    when the residual does. The random starts come from ``generator`` (default: seed 0).
    The Krylov basis is as precise as the products by default (``krylov_dtype``: float32 for a
    float32 model, half the memory of float64; ``tol`` then defaults to 100 eps32).

    Returns a float64 tensor ``(k,)`` on the parameters' device; with ``return_vectors`` also
    the unit Ritz vectors ``(P, k)`` (float64).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        return krylov.top_eigenvalues(op, k, which=which, max_iter=max_iter, tol=tol, generator=generator,
                                      return_vectors=return_vectors, krylov_dtype=krylov_dtype, stacklevel=2)


def top_eigenpairs(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    k: int = 1,
    *,
    params: Sequence[str] | str | None = None,
    weights: Sequence[float] | None = None,
    **options: Any,
) -> LanczosResult:
    """`top_eigenvalues` without a warning: the `krylov.LanczosResult`, which also says how far
    the vectors (``residual``) and the values (``value_error``) have converged, whether the
    stopping rule was met (``converged``) and what it cost (``products``). ``options``: those of
    `krylov.lanczos` (``which``, ``max_iter``, ``tol``, ``generator``, ``start_vector``,
    ``krylov_dtype``)."""
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        return krylov.lanczos(op, k, **options)


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    *,
    n_samples: int = 60,
    method: str = "hutch++",
    params: Sequence[str] | str | None = None,
    generator: torch.Generator | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[float, float]:
    """``(estimate, standard_error)`` of ``tr H`` from ``n_samples`` Hessian-vector products
    (`krylov.trace`).

    ``"hutchinson"``: mean of ``z^T H z`` over ``n_samples`` Rademacher ``z``; standard error
    = sample std / sqrt(n_samples). ``"hutch++"`` (Meyer et al. 2021, Algorithm 1):
    ``⌊n/3⌋`` products sketch ``Q = orth(H S)``, ``⌊n/3⌋`` give ``tr(Q^T H Q)`` exactly, and
    the remaining ``g = n - 2⌊n/3⌋`` Rademacher probes projected off ``Q`` estimate the residual
    trace. Since ``tr(Q^T H Q) + tr((I-QQ^T) H (I-QQ^T)) = tr H`` for every orthonormal ``Q``,
    the estimate is unbiased given ``Q``, and its standard error is that of the residual part:
    its sample std / sqrt(g). Probes from ``generator`` (default: seed 0).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        return krylov.trace(op, n_samples=n_samples, method=method, generator=generator)


def density(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    *,
    n_probes: int = 8,
    lanczos_steps: int = 64,
    params: Sequence[str] | str | None = None,
    generator: torch.Generator | None = None,
    probes: Tensor | None = None,
    weights: Sequence[float] | None = None,
) -> SpectralDensity:
    """Eigenvalue density of ``H`` by stochastic Lanczos quadrature (Ghorbani et al. 2019;
    `krylov.density`).

    ``n_probes`` Rademacher probes (normalized inside Lanczos; or explicit ``probes`` (P, n)),
    each run for ``min(lanczos_steps, P)`` Lanczos steps, all probes side by side (one batched
    Hessian product per step). Returns a `SpectralDensity` whose ``moment(k)`` estimates
    ``tr(H^k)/P`` without bias for ``k <= 2·lanczos_steps - 1``. The Krylov bases (``n_probes``
    x ``lanczos_steps`` x P) are as precise as the products: float32 for a float32 model.
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        return krylov.density(op, n_probes=n_probes, lanczos_steps=lanczos_steps, generator=generator,
                              probes=probes)


def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    *,
    params: Sequence[str] | str | None = None,
    max_iter: int = 100,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    weights: Sequence[float] | None = None,
) -> float:
    """The sharpness ``λ_max(H)``: the largest algebraic eigenvalue (Cohen et al. 2021)."""
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        values = krylov.top_eigenvalues(op, 1, which="largest", max_iter=max_iter, tol=tol,
                                        generator=generator, stacklevel=2)
    return float(values[0])


def adam_preconditioner(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    params: Sequence[str] | str | None = None,
) -> Tensor:
    """Adam's diagonal preconditioner ``P_t = (1 - β1^t)(sqrt(v̂_t) + ε)`` as a flat ``(P,)``
    float64 vector over the selected parameters, so that Adam's step is
    ``w_{t+1} = w_t - lr · exp_avg / P_t`` (Cohen et al. 2022; with ``amsgrad`` the running max
    of ``v`` replaces ``v``, as PyTorch does). Needs a `torch.optim.Adam` or `AdamW` that has
    taken at least one step on every selected parameter.
    """
    if not isinstance(optimizer, torch.optim.Adam):
        raise ConfigError(f"the preconditioner is defined for torch.optim.Adam/AdamW, got "
                          f"{type(optimizer).__name__}")
    names = select_parameters(model, params)
    named = dict(model.named_parameters())
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for n in names:
        p = named[n]
        state = optimizer.state.get(p, {})
        if id(p) not in groups or "exp_avg_sq" not in state:
            raise ConfigError(f"parameter {n!r} has no Adam state; it must be in the optimizer "
                              "and the optimizer must have taken a step")
        group = groups[id(p)]
        beta1, beta2 = group["betas"]
        t = float(state["step"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
        v_hat = v.detach().to(torch.float64) / (1 - beta2**t)
        parts.append(((1 - beta1**t) * (v_hat.sqrt() + group["eps"])).reshape(-1))
    return torch.cat(parts)


def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    optimizer: torch.optim.Optimizer,
    *,
    params: Sequence[str] | str | None = None,
    max_iter: int = 100,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    weights: Sequence[float] | None = None,
) -> float:
    """``λ_max(P_t^{-1} H)`` for Adam's current preconditioner (Cohen et al. 2022).

    Computed as the top eigenvalue of the symmetric ``P^{-1/2} H P^{-1/2}`` (same spectrum) by
    Lanczos. Adam's coupled L2 ``weight_decay`` λ is part of its gradient, so ``H + λI`` is used
    for those parameter groups; decoupled decay (AdamW) is not a curvature term and is left out,
    as in the paper. Compare with ``stability_threshold(lr, beta1)`` (38/η for β1 = 0.9).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        P = adam_preconditioner(model, optimizer, params=params)
        named = dict(model.named_parameters())
        groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        shift = torch.cat([
            torch.full((named[n].numel(),), 0.0 if groups[id(named[n])].get(
                "decoupled_weight_decay", False) else float(groups[id(named[n])]["weight_decay"]),
                dtype=torch.float64)
            for n in op.names
        ])
        pre = _Preconditioned(op, P.rsqrt(), shift)
        values = krylov.top_eigenvalues(pre, 1, which="largest", max_iter=max_iter, tol=tol,
                                        generator=generator, stacklevel=2)
        return float(values[0])


def stability_threshold(lr: float, beta1: float = 0.0) -> float:
    """The largest (preconditioned) sharpness at which the optimizer is stable on a quadratic:
    ``(2 + 2β1) / ((1 - β1) lr)`` for EMA momentum ``m ← β1 m + (1-β1) g`` as in Adam
    (38/lr for β1 = 0.9), which is ``2/lr`` for gradient descent (``β1 = 0``)."""
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr}")
    if not 0 <= beta1 < 1:
        raise ConfigError(f"beta1 must lie in [0, 1), got {beta1}")
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


def edge_of_stability(sharpness: float | Tensor, lr: float, beta1: float = 0.0) -> float:
    """``sharpness / stability_threshold(lr, beta1)``: 1 at the edge of stability.

    For gradient descent pass the sharpness ``λ_max(H)`` and ``beta1 = 0`` (ratio
    ``λ_max / (2/η)``, Cohen et al. 2021). For Adam the relevant quantity is the preconditioned
    sharpness (`preconditioned_sharpness`) with Adam's ``beta1`` (Cohen et al. 2022); the raw
    sharpness against 2/η says nothing about Adam's stability.
    """
    return float(sharpness) / stability_threshold(lr, beta1)

