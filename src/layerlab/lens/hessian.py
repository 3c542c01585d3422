r"""Hessian of the training loss: products, extreme eigenvalues, trace, spectral density, sharpness.

The loss is :math:`L(\theta) = \frac1B \sum_{b=1}^{B} \ell(\theta; \text{batch}_b)`, the mean over
the list ``batches`` of ``loss_fn(model, batch_b)`` (each itself a mean over its batch), and the
Hessian is :math:`H = \nabla^2_\theta L` with respect to the trainable parameters, flattened in
``model.named_parameters()`` order, so ``H`` is ``(P, P)`` with ``P`` the number of selected
scalars. ``params`` (names or name prefixes such as ``"blocks.0."``) picks a per-layer block
:math:`H_{SS}` (rows and columns of the chosen parameters; the others are held fixed). The model is
evaluated in eval mode (no dropout, no batch-norm statistics updates).

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
* Lanczos, "An iteration method for the solution of the eigenvalue problem of linear differential
  and integral operators", J. Res. NBS 45, 1950 (no arXiv). From a unit :math:`q_1`,
  :math:`\beta_j q_{j+1} = H q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}`,
  :math:`\alpha_j = q_j^\top H q_j`, giving :math:`Q_m^\top H Q_m = T_m` tridiagonal; the
  eigenvalues of :math:`T_m` (Ritz values) approach the extreme eigenvalues of ``H``. The Krylov
  basis is kept in float64 and fully reorthogonalized (classical Gram–Schmidt, twice); a Ritz
  pair :math:`(\theta_i, Q_m s_i)` has residual norm :math:`\beta_m |e_m^\top s_i|`, the
  stopping test (confirmed by an explicit :math:`\|Hy - \theta y\|`). A Krylov space of one
  start vector holds one vector per eigenspace, so for ``k >= 2`` the search is continued from
  random vectors orthogonal to the basis until repeated eigenvalues are found (see
  `top_eigenvalues`).
* Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
  smoothing splines", Comm. Stat. Simul. Comput. 18(3), 1989 (no arXiv).
  :math:`\operatorname{tr} H \approx \frac1m \sum_i z_i^\top H z_i` with Rademacher :math:`z_i`;
  :math:`\operatorname{Var}(z^\top H z) = 2\sum_{i\ne j} H_{ij}^2`.
* Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace Estimation", SOSA 2021,
  arXiv:2010.09649, Algorithm 1. With ``m`` products: ``S`` (P × m/3) Rademacher,
  ``Q = orth(H S)``, then
  :math:`\operatorname{tr}(Q^\top H Q) + \frac{3}{m}\operatorname{tr}(G^\top (I-QQ^\top) H
  (I-QQ^\top) G)` with ``G`` (P × m/3) Rademacher (here the residual gets the
  ``m - 2⌊m/3⌋`` products left over). Its standard error is that of the residual Hutchinson
  part (sample std / √g over its ``g`` probes): given ``Q`` the estimate is unbiased, since
  :math:`\operatorname{tr}(Q^\top HQ) + \operatorname{tr}((I-QQ^\top)H(I-QQ^\top))
  = \operatorname{tr} H` for any orthonormal ``Q``.
* Ghorbani, Krishnan & Xiao, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
  Density", ICML 2019, arXiv:1901.10159 (stochastic Lanczos quadrature; also Golub & Welsch 1969,
  Ubaru, Chen & Saad 2017). The spectral density
  :math:`\phi(t) = \frac1P \sum_{i=1}^P \delta(t - \lambda_i)` is approximated, for each probe
  :math:`v` (unit norm), by the Gauss quadrature of :math:`v^\top f(H) v`: nodes
  :math:`\theta_k` = eigenvalues of the Lanczos :math:`T_m` started at :math:`v`, weights
  :math:`\tau_k = (e_1^\top s_k)^2`; averaged over probes. The rule is exact for polynomials of
  degree :math:`\le 2m-1`, so :math:`\sum_k \tau_k \theta_k^p = v^\top H^p v`, whose mean over
  probes uniform on the sphere (or normalized Rademacher) is :math:`\operatorname{tr}(H^p)/P`.
  The paper draws Gaussian probes; here they are Rademacher (as in Ubaru et al. and PyHessian):
  also unbiased, and with a smaller variance (no diagonal term). Smoothing uses :math:`g_\sigma(t) = e^{-t^2/2\sigma^2}/(\sigma\sqrt{2\pi})`.
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

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..errors import ConfigError, ShapeError, unknown_name
from ._util import LossFn, select_parameters, side_effect_free

__all__ = [
    "HessianOperator",
    "SpectralDensity",
    "hvp",
    "top_eigenvalues",
    "trace",
    "density",
    "sharpness",
    "preconditioned_sharpness",
    "adam_preconditioner",
    "stability_threshold",
    "edge_of_stability",
]

MODES = ("auto", "double-backward", "forward-over-reverse", "reverse-over-reverse")
WHICH = ("largest", "smallest", "magnitude")
TRACE_METHODS = ("hutchinson", "hutch++")
DEFAULT_SEED = 0


# ----------------------------------------------------------------------------------------------
# Parameter selection and the functional loss


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


class _Operator(Protocol):
    dim: int
    device: torch.device

    def matmat(self, V: Tensor) -> Tensor: ...


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    return generator


def _randn(gen: torch.Generator, shape: tuple[int, ...], device: torch.device,
           dtype: torch.dtype = torch.float64) -> Tensor:
    # drawn in float32 (6x faster than float64 on CPU; a start vector needs no more precision),
    # used in `dtype`
    return torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32).to(device, dtype)


def _rademacher(gen: torch.Generator, shape: tuple[int, ...], device: torch.device,
                dtype: torch.dtype = torch.float64) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device=gen.device, dtype=torch.int8)
    return bits.to(device=device, dtype=dtype).mul_(2).sub_(1)


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
    ) -> None:
        self.batches = _check_batches(batches)
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
            total += torch.cat([(torch.zeros(c, p.numel(), dtype=self.dtype, device=self.device) if o is None
                                 else o.reshape(c, -1).to(self.dtype)) for o, p in zip(out, params)], dim=1)
        total /= len(self.batches)
        return total.T if batched else total[0]

    def _product(self, v: Tensor, mode: str) -> Tensor:
        if mode == "double-backward":
            return self._double_backward(v)
        sel, fixed = self._tensors()
        tangent = self._unflatten(v)
        total = None
        for batch in self.batches:
            def gradient(s: tuple[Tensor, ...], batch: Any = batch) -> tuple[Tensor, ...]:
                return grad(lambda s_: self._loss(s_, fixed, batch))(s)

            if mode == "forward-over-reverse":
                out = jvp(gradient, (sel,), (tangent,))[1]
            else:
                out = vjp(gradient, sel)[1](tangent)[0]
            flat = torch.cat([o.reshape(-1).to(self.dtype) for o in out])
            total = flat if total is None else total + flat
        return total / len(self.batches)

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
        """See `top_eigenvalues`."""
        return _lanczos_eigs(self, k, **kwargs)

    def top_eigenpairs(self, k: int = 1, **kwargs: Any) -> LanczosResult:
        """`top_eigenvalues` without the warning: a `LanczosResult` that also says how close
        it came (``residual``, ``converged``) and what it cost (``products``)."""
        return _lanczos_run(self, k, **kwargs)

    def trace(self, **kwargs: Any) -> tuple[float, float]:
        """See `trace`."""
        return _trace(self, **kwargs)

    def density(self, **kwargs: Any) -> SpectralDensity:
        """See `density`."""
        return _slq(self, **kwargs)


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
# Lanczos with full reorthogonalization (columns of V0 run independently, side by side)


def _apply_as(op: _Operator, V: Tensor) -> Tensor:
    """``H V`` in the dtype of ``V`` (the estimator's working precision)."""
    return op.matmat(V).to(V.dtype)


def _orthogonalize(W: Tensor, basis: Tensor) -> Tensor:
    """Remove from each column ``W[:, c]`` its components along the rows of ``basis[c]``
    (``basis``: (n, j, P), orthonormal rows); twice, which is enough in floating point."""
    for _ in range(2):
        coef = torch.einsum("njp,pn->nj", basis, W)
        W = W - torch.einsum("njp,nj->pn", basis, coef)
    return W


def _orthogonalize_vector(w: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    """`w` (P,) without its components along the orthonormal rows of `basis` (m, P), and the
    coefficients ``basis @ w`` that were removed (m,).

    Classical Gram–Schmidt, repeated once when the first pass cancelled more than half of the
    norm (Kahan–Parlett's "twice is enough" test): the Lanczos vector is nearly orthogonal to the
    basis already, so the second pass, which would read the basis again, is usually skipped."""
    before = w.norm()
    coef = basis @ w
    w = torch.addmv(w, basis.T, coef, alpha=-1)
    if w.norm() < 0.5 ** 0.5 * before:
        again = basis @ w
        w = torch.addmv(w, basis.T, again, alpha=-1)
        coef = coef + again
    return w, coef


def _coarser(op: _Operator, dtype: torch.dtype = torch.float64) -> torch.dtype:
    """The less precise of the operator's dtype and the Krylov vectors' `dtype`."""
    op_dtype = getattr(op, "dtype", torch.float64)
    return op_dtype if torch.finfo(op_dtype).eps > torch.finfo(dtype).eps else dtype


def _krylov_dtype(op: _Operator, dtype: torch.dtype | None) -> torch.dtype:
    """`dtype`, or by default as precise as the products: float64 for a float64 operator, else
    float32 (a float64 basis would not make a float32 operator's eigenvalues more accurate)."""
    if dtype is None:
        return torch.float64 if getattr(op, "dtype", torch.float64) == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"krylov_dtype must be torch.float32, torch.float64 or None (as precise as the "
                          f"products), got {dtype}")
    return dtype


def _breakdown(op: _Operator, dtype: torch.dtype = torch.float64) -> float:
    """Relative size of a Lanczos residual below which the Krylov space counts as invariant."""
    return 100 * torch.finfo(_coarser(op, dtype)).eps


def _lanczos(op: _Operator, V0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """``steps`` Lanczos iterations from each column of ``V0`` (P, n), side by side.

    Returns the diagonals ``alpha`` (n, steps) and off-diagonals ``beta`` (n, steps - 1) of each
    column's tridiagonal ``T``, float64 (the basis is kept in ``V0``'s dtype). A column whose
    Krylov space becomes invariant (``beta ~ 0``) is padded with zeros: a decoupled zero block,
    whose quadrature weights (first eigenvector components) are 0, so the Gauss rule of the
    invariant part is unchanged.
    """
    P, n = V0.shape
    tol = _breakdown(op, V0.dtype)
    Q = V0.new_zeros(n, steps, P)
    alpha = V0.new_zeros(n, steps)
    beta = V0.new_zeros(n, steps)
    q = V0 / V0.norm(dim=0)
    q_prev = torch.zeros_like(q)
    b_prev = V0.new_zeros(n)
    scale = V0.new_zeros(n)
    for j in range(steps):
        Q[:, j] = q.T
        w = _apply_as(op, q)
        a = (q * w).sum(0)
        w = _orthogonalize(w - a * q - b_prev * q_prev, Q[:, : j + 1])
        b = w.norm(dim=0)
        scale = torch.maximum(scale, a.abs() + b + b_prev)
        b = torch.where(b <= tol * scale, torch.zeros_like(b), b)
        alpha[:, j], beta[:, j] = a, b
        q_prev, b_prev = q, b
        q = torch.where(b > 0, w / torch.where(b > 0, b, torch.ones_like(b)), torch.zeros_like(w))
    return alpha.to(torch.float64), beta[:, :-1].to(torch.float64)


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    """(..., m) diagonals and (..., m-1) off-diagonals -> (..., m, m) symmetric tridiagonal."""
    return (torch.diag_embed(alpha) + torch.diag_embed(beta, offset=1)
            + torch.diag_embed(beta, offset=-1))


def _order(theta: Tensor, which: str) -> Tensor:
    if which == "largest":
        return torch.argsort(theta, descending=True)
    if which == "smallest":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


def _key(theta: Tensor, which: str) -> Tensor:
    """Larger key = wanted first."""
    return {"largest": theta, "smallest": -theta, "magnitude": theta.abs()}[which]


def _grown(buffer: Tensor, limit: int) -> Tensor:
    """`buffer` with twice the rows (at most `limit`), its rows copied."""
    out = torch.empty(min(2 * buffer.shape[0], limit), *buffer.shape[1:], dtype=buffer.dtype, device=buffer.device)
    out[: buffer.shape[0]] = buffer
    return out


@dataclass
class LanczosResult:
    """What one `_lanczos_run` found: Ritz ``values`` (k,) and unit ``vectors`` (P, k), float64;
    ``residual`` = the largest relative Ritz residual ``||H y - θ y|| / max|θ|`` of the wanted
    pairs when it was last computed (inf if never); ``products`` = Hessian-vector products taken;
    ``converged`` = whether ``residual <= tol`` (the tolerance in force)."""

    values: Tensor
    vectors: Tensor
    residual: float
    products: int
    converged: bool
    tol: float


def _lanczos_eigs(
    op: _Operator,
    k: int = 1,
    *,
    return_vectors: bool = False,
    **kwargs: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """`_lanczos_run`, warning (RuntimeWarning) when it stops at ``max_iter`` unconverged."""
    result = _lanczos_run(op, k, **kwargs)
    if not result.converged:
        warnings.warn(
            f"Lanczos did not converge in {result.products} steps: largest relative Ritz residual "
            f"{result.residual:.2e} > tol={result.tol:.1e}; raise max_iter",
            RuntimeWarning,
            stacklevel=3,
        )
    return (result.values, result.vectors) if return_vectors else result.values


def _lanczos_run(
    op: _Operator,
    k: int = 1,
    *,
    which: str = "largest",
    max_iter: int = 100,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    start_vector: Tensor | None = None,
    krylov_dtype: torch.dtype | None = None,
) -> LanczosResult:
    """Lanczos with full reorthogonalization, Rayleigh–Ritz on the whole basis, and restarts.

    The basis ``Q`` and the products ``HQ`` are kept, so the Ritz pairs come from the projected
    matrix ``Q H Q^T`` of everything explored (float64), and a residual ``||H y - θ y||`` can be
    computed exactly. A Lanczos sequence from a random start ends when its wanted Ritz pairs
    have converged (``beta_m |e_m^T s_i| <= tol·max|θ|``, then checked explicitly) or when it
    breaks down (invariant subspace). Single-vector Krylov spaces hold one vector of each
    eigenspace, so a repeated eigenvalue (e.g. the ``out_features`` copies in the output-layer
    block of a squared loss) is seen once; for ``k >= 2`` a new sequence is therefore started
    from a random vector orthogonal to the basis (Lanczos on the deflated operator
    ``(I - QQ^T) H (I - QQ^T)``, which holds every missed copy), run until its own best Ritz pair
    has converged, and the search stops once such a sequence leaves the wanted values unchanged.
    ``k = 1`` needs no such check (a copy does not change the top value).

    ``start_vector`` (optional) starts the first sequence there instead of at a random vector
    (plus a 1e-3 random part, so no eigendirection is missed): a warm start from the previous top
    eigenvector when the Hessian changes little between calls, as along a training run.

    ``krylov_dtype``: the dtype of ``Q`` and ``HQ``; by default as precise as the products
    (float64 for a float64 model, float32 otherwise). float32 halves the memory of the basis and
    the traffic of its reorthogonalization, which on a small model costs as much as the products;
    the residuals it can certify are about 1e-6 relative, and the default `tol` follows the
    coarser of the operator's and the basis' dtypes. The Ritz values and vectors are float64.
    """
    if which not in WHICH:
        raise unknown_name("eigenvalue order", which, WHICH)
    if not 1 <= k <= op.dim:
        raise ConfigError(f"k={k} eigenvalues requested of a {op.dim}-dimensional Hessian; "
                          f"k must lie in 1..{op.dim}")
    if max_iter < k:
        raise ConfigError(f"max_iter={max_iter} is smaller than k={k}; raise max_iter")
    krylov_dtype = _krylov_dtype(op, krylov_dtype)
    if tol is None:
        tol = max(1e-10, 100 * torch.finfo(_coarser(op, krylov_dtype)).eps)
    gen = _default_generator(generator)
    P, steps, brk = op.dim, min(max_iter, op.dim), _breakdown(op, krylov_dtype)
    kd = dict(dtype=krylov_dtype, device=op.device)
    f64 = dict(dtype=torch.float64, device=op.device)
    # the Krylov basis grows as needed: max_iter x P rows up front would cost more to allocate
    # than the few products a well-separated top eigenvalue takes, and a block above the
    # allocator's mmap threshold (32 MB in glibc) comes back as fresh pages on every call, each
    # first write a page fault (2 ms per float64 row at P = 273k, as long as the product it holds)
    rows = steps if steps <= 16 else 8  # a capped run (a probe's budget) gets its basis at once
    Q, HQ = torch.empty(rows, P, **kd), torch.empty(rows, P, **kd)
    M = torch.zeros(steps, steps, **f64)
    alpha, beta = torch.zeros(steps, **f64), torch.zeros(steps, **f64)
    if start_vector is not None:
        if start_vector.shape != (P,):
            raise ShapeError(f"start_vector must have shape ({P},) (one entry per selected parameter), "
                             f"got {tuple(start_vector.shape)}")
        q = start_vector.to(**kd)
        q = torch.add(q / q.norm(), _randn(gen, (P,), op.device, krylov_dtype), alpha=1e-3 / math.sqrt(P))
    else:
        q = _randn(gen, (P,), op.device, krylov_dtype)
    q = q / q.norm()
    start, b_prev, scale = 0, 0.0, 0.0
    reference: Tensor | None = None  # wanted values when the previous sequence ended
    converged, residual, m = False, math.inf, 0
    for j in range(steps):
        m = j + 1
        if j == Q.shape[0]:
            Q, HQ = _grown(Q, steps), _grown(HQ, steps)
        Q[j] = q
        HQ[j] = hq = _apply_as(op, q[:, None])[:, 0]
        a = float(torch.dot(q, hq))
        w = torch.add(hq, q, alpha=-a)
        if j > start:
            w.sub_(Q[j - 1], alpha=b_prev)
        # The new column of Q^T H Q (symmetric: also its new row) is what Gram–Schmidt removes
        # from w, plus the a q and b_prev q_prev removed above: one read of the basis for both.
        w, row = _orthogonalize_vector(w, Q[:m])
        row = row.to(torch.float64)
        row[j] += a
        if j > start:
            row[j - 1] += b_prev
        M[j, :m], M[:m, j] = row, row
        alpha[j] = M[j, j]
        b = float(w.norm())
        scale = max(scale, float(hq.norm()))
        broken = b <= brk * scale
        theta, S = torch.linalg.eigh(M[:m, :m])
        size = float(theta.abs().max()) or torch.finfo(torch.float64).tiny
        if m == P:  # the basis spans everything: the Ritz values are the eigenvalues
            converged, residual = True, 0.0
            break
        # Cheap test (the Lanczos relation of the current sequence), then the explicit residual.
        if reference is None:
            cheap = m >= k and (broken or float((b * S[-1, _order(theta, which)[:k]].abs()).max())
                                <= tol * size)
        else:
            t_own, s_own = torch.linalg.eigh(_tridiagonal(alpha[start:m], beta[start: m - 1]))
            best = _order(t_own, which)[0]
            cheap = broken or b * float(s_own[-1, best].abs()) <= tol * size
        ended = broken
        if cheap:
            idx = _order(theta, which)[:k]
            residual = _ritz_residual(Q[:m], HQ[:m], theta[idx], S[:, idx]) / size
            if residual <= tol:
                wanted = torch.sort(_key(theta, which), descending=True).values[:k]
                if k == 1 or (reference is not None
                              and float((wanted - reference).abs().max()) <= tol * size):
                    converged = True
                    break
                reference, ended = wanted, True
        if ended:  # start a new sequence orthogonal to everything explored
            r = _orthogonalize_vector(_randn(gen, (P,), op.device, krylov_dtype), Q[:m])[0]
            q, start, b_prev = r / r.norm(), m, 0.0
        else:
            beta[j], b_prev = b, b
            q = w / b
    theta, S = torch.linalg.eigh(M[:m, :m])
    idx = _order(theta, which)[:k]
    if not converged:  # the explicit residual of what is returned
        size = float(theta.abs().max()) or torch.finfo(torch.float64).tiny
        residual = _ritz_residual(Q[:m], HQ[:m], theta[idx], S[:, idx]) / size
    vectors = (Q[:m].T @ S[:, idx].to(krylov_dtype)).to(torch.float64)
    return LanczosResult(theta[idx], vectors / vectors.norm(dim=0), residual, m, converged, tol)


def _ritz_residual(Q: Tensor, HQ: Tensor, theta: Tensor, S: Tensor) -> float:
    """The largest ``||H y - θ y||`` over the Ritz pairs ``(θ_i, y_i = Q^T s_i)``, from the kept
    products ``HQ`` (no new product); in the basis' dtype."""
    S = S.to(Q.dtype)
    R = HQ.T @ S - (Q.T @ S) * theta.to(Q.dtype)
    return float(R.norm(dim=0).max())


# ----------------------------------------------------------------------------------------------
# Trace


def _trace(
    op: _Operator,
    *,
    n_samples: int = 60,
    method: str = "hutch++",
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    if method not in TRACE_METHODS:
        raise unknown_name("trace method", method, TRACE_METHODS)
    gen = _default_generator(generator)
    P, dt = op.dim, _krylov_dtype(op, None)  # as precise as the products
    if method == "hutchinson":
        if n_samples < 2:
            raise ConfigError(f"hutchinson needs n_samples >= 2 for a standard error, "
                              f"got {n_samples}")
        Z = _rademacher(gen, (P, n_samples), op.device, dt)
        samples = (Z * _apply_as(op, Z)).sum(0)
        return float(samples.mean()), float(samples.std() / math.sqrt(n_samples))
    if n_samples < 4:
        raise ConfigError(f"hutch++ needs n_samples >= 4 (sketch, its products and >= 2 residual "
                          f"probes), got {n_samples}")
    s = n_samples // 3
    g = n_samples - 2 * s
    S = _rademacher(gen, (P, s), op.device, dt)
    Q = torch.linalg.qr(_apply_as(op, S)).Q  # (P, min(P, s)), orthonormal columns
    low_rank = torch.trace(Q.T @ _apply_as(op, Q))
    G = _rademacher(gen, (P, g), op.device, dt)
    G = G - Q @ (Q.T @ G)
    samples = (G * _apply_as(op, G)).sum(0)
    return float(low_rank + samples.mean()), float(samples.std() / math.sqrt(g))


# ----------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature


@dataclass(frozen=True)
class SpectralDensity:
    r"""A discrete approximation of the Hessian's eigenvalue distribution
    :math:`\phi(t) = \frac1P\sum_i \delta(t-\lambda_i)` by stochastic Lanczos quadrature.

    ``nodes`` (n_probes, m): the Ritz values of each probe's Lanczos tridiagonal matrix.
    ``weights`` (n_probes, m): the squared first components of its eigenvectors divided by
    ``n_probes``, so each probe's row sums to ``1/n_probes`` and all weights sum to 1 (the
    measure is a probability distribution over eigenvalues). ``dim``: ``P``. float64.
    """

    nodes: Tensor
    weights: Tensor
    dim: int

    @property
    def n_probes(self) -> int:
        return int(self.nodes.shape[0])

    def probe_moments(self, k: int) -> Tensor:
        """Each probe's quadrature of :math:`v^\\top H^k v` (unit ``v``), shape (n_probes,);
        exact (up to rounding) for ``k <= 2m - 1``."""
        return self.n_probes * (self.weights * self.nodes**k).sum(1)

    def moment(self, k: int) -> float:
        """:math:`\\int t^k \\phi(t) dt \\approx \\operatorname{tr}(H^k)/P` (k = 0 gives 1)."""
        return float((self.weights * self.nodes**k).sum())

    def moment_standard_error(self, k: int) -> float:
        """Standard error of `moment(k)` from the spread over probes (std / sqrt(n_probes))."""
        if self.n_probes < 2:
            return math.nan
        return float(self.probe_moments(k).std() / math.sqrt(self.n_probes))

    def smoothed(self, grid: Tensor, sigma: float) -> Tensor:
        """The density broadened by a Gaussian of standard deviation ``sigma`` (loss units),
        evaluated at ``grid`` (any shape); integrates to 1 over the real line. float64."""
        if sigma <= 0:
            raise ConfigError(f"sigma must be positive, got {sigma}")
        t = grid.to(device=self.nodes.device, dtype=torch.float64)
        diff = t.reshape(-1, 1) - self.nodes.reshape(1, -1)
        kernel = torch.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (kernel @ self.weights.reshape(-1)).reshape(t.shape)


def _slq(
    op: _Operator,
    *,
    n_probes: int = 8,
    lanczos_steps: int = 64,
    generator: torch.Generator | None = None,
    probes: Tensor | None = None,
) -> SpectralDensity:
    if lanczos_steps < 1:
        raise ConfigError(f"lanczos_steps must be >= 1, got {lanczos_steps}")
    dt = _krylov_dtype(op, None)  # as precise as the products
    if probes is None:
        if n_probes < 1:
            raise ConfigError(f"n_probes must be >= 1, got {n_probes}")
        V0 = _rademacher(_default_generator(generator), (op.dim, n_probes), op.device, dt)
    else:
        if probes.dim() != 2 or probes.shape[0] != op.dim:
            raise ShapeError(f"probes must have shape ({op.dim}, n_probes), "
                             f"got {tuple(probes.shape)}")
        V0 = probes.to(device=op.device, dtype=dt)
        if bool((V0.norm(dim=0) == 0).any()):
            raise ShapeError("a probe is the zero vector; probes must be nonzero columns")
    alpha, beta = _lanczos(op, V0, min(lanczos_steps, op.dim))
    theta, S = torch.linalg.eigh(_tridiagonal(alpha, beta))
    weights = S[:, 0, :] ** 2 / V0.shape[1]
    return SpectralDensity(nodes=theta, weights=weights, dim=op.dim)


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
) -> Tensor:
    """The Hessian-vector product ``H v`` of the mean loss over ``batches``.

    ``v``: flat ``(P,)`` over the selected trainable parameters (``named_parameters`` order).
    Returns ``(P,)`` in the parameters' dtype. Build a `HessianOperator` for many products.
    """
    return HessianOperator(model, loss_fn, batches, params=params, mode=mode).matvec(v)


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
) -> Tensor | tuple[Tensor, Tensor]:
    """The ``k`` extreme eigenvalues of ``H`` by Lanczos with full reorthogonalization.

    ``which``: ``"largest"`` (algebraic, descending; the sharpness of the edge of stability is
    the first), ``"smallest"`` (algebraic, ascending; negative ones show saddle directions) or
    ``"magnitude"`` (descending ``|λ|``, what power iteration finds). A Lanczos sequence stops
    when every wanted Ritz pair has residual ``||H y - θ y|| <= tol · max|θ|`` (which bounds
    ``|θ - λ|``; default ``tol = max(1e-10, 100 eps(dtype))``); for ``k >= 2`` one more sequence,
    orthogonal to everything explored, must leave the wanted values unchanged, so repeated
    eigenvalues are reported with their multiplicity (this roughly doubles the products). After
    ``min(max_iter, P)`` products without convergence it warns (RuntimeWarning) and returns the
    current Ritz values. The random starts come from ``generator`` (default: seed 0).
    The Krylov basis is as precise as the products by default (``krylov_dtype``: float32 for a
    float32 model, half the memory of float64; ``tol`` then defaults to 100 eps32).

    Returns a float64 tensor ``(k,)`` on the parameters' device; with ``return_vectors`` also
    the unit Ritz vectors ``(P, k)`` (float64).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params)
        return _lanczos_eigs(op, k, which=which, max_iter=max_iter, tol=tol, generator=generator,
                             return_vectors=return_vectors, krylov_dtype=krylov_dtype)


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    *,
    n_samples: int = 60,
    method: str = "hutch++",
    params: Sequence[str] | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """``(estimate, standard_error)`` of ``tr H`` from ``n_samples`` Hessian-vector products.

    ``"hutchinson"``: mean of ``z^T H z`` over ``n_samples`` Rademacher ``z``; standard error
    = sample std / sqrt(n_samples). ``"hutch++"`` (Meyer et al. 2021, Algorithm 1):
    ``⌊n/3⌋`` products sketch ``Q = orth(H S)``, ``⌊n/3⌋`` give ``tr(Q^T H Q)`` exactly, and
    the remaining ``g = n - 2⌊n/3⌋`` Rademacher probes projected off ``Q`` estimate the residual
    trace. Since ``tr(Q^T H Q) + tr((I-QQ^T) H (I-QQ^T)) = tr H`` for every orthonormal ``Q``,
    the estimate is unbiased given ``Q``, and its standard error is that of the residual part:
    its sample std / sqrt(g). Probes from ``generator`` (default: seed 0).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params)
        return _trace(op, n_samples=n_samples, method=method, generator=generator)


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
) -> SpectralDensity:
    """Eigenvalue density of ``H`` by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    ``n_probes`` Rademacher probes (normalized inside Lanczos; or explicit ``probes`` (P, n)),
    each run for ``min(lanczos_steps, P)`` Lanczos steps, all probes side by side (one batched
    Hessian product per step). Returns a `SpectralDensity` whose ``moment(k)`` estimates
    ``tr(H^k)/P`` without bias for ``k <= 2·lanczos_steps - 1``. The Krylov bases (``n_probes``
    x ``lanczos_steps`` x P) are as precise as the products: float32 for a float32 model.
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params)
        return _slq(op, n_probes=n_probes, lanczos_steps=lanczos_steps, generator=generator,
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
) -> float:
    """The sharpness ``λ_max(H)``: the largest algebraic eigenvalue (Cohen et al. 2021)."""
    values = top_eigenvalues(model, loss_fn, batches, 1, params=params, which="largest",
                             max_iter=max_iter, tol=tol, generator=generator)
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
) -> float:
    """``λ_max(P_t^{-1} H)`` for Adam's current preconditioner (Cohen et al. 2022).

    Computed as the top eigenvalue of the symmetric ``P^{-1/2} H P^{-1/2}`` (same spectrum) by
    Lanczos. Adam's coupled L2 ``weight_decay`` λ is part of its gradient, so ``H + λI`` is used
    for those parameter groups; decoupled decay (AdamW) is not a curvature term and is left out,
    as in the paper. Compare with ``stability_threshold(lr, beta1)`` (38/η for β1 = 0.9).
    """
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params)
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
        values = _lanczos_eigs(pre, 1, which="largest", max_iter=max_iter, tol=tol,
                               generator=generator)
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
