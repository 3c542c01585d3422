r"""Curvature beyond the Hessian's extreme eigenvalues: its diagonal, its Gauss–Newton and residual
parts as operators of their own, and the edge of stability read off a run.

The loss is that of `layerlab.lens.hessian`: the mean over all examples of ``batches`` (each batch's
mean loss weighed by its size, or by ``weights=``), with respect to the selected trainable
parameters flattened in ``named_parameters()`` order (``P`` scalars). For the Gauss–Newton split
the loss must be a loss of the model's *outputs*: ``ℓ_b(θ) = ℓ(f(θ; x_b), y_b)`` with
``f = forward(model, batch)`` (default: ``model(batch.inputs)`` for a layerlab ``Batch``,
``model(batch[0])`` for a tuple ``(x, y)``) and ``ℓ`` one of `OUTPUT_LOSSES`:

* ``"cross_entropy"``: logits ``(..., C)`` and integer targets ``(...)``; the mean over scored
  positions (a ``Batch``'s ``mask``), as ``Task.loss``;
* ``"mse"``: ``mean((f - y)^2)`` over all elements (``F.mse_loss``);
* ``"half_mse"``: ``½ mean((f - y)^2)``.

Papers and the quantities taken from them
-----------------------------------------
* Bekas, Kokiopoulou & Saad, "An estimator for the diagonal of a matrix", Applied Numerical
  Mathematics 57(11-12), 2007 (no arXiv). With Rademacher :math:`z_k`,
  :math:`\operatorname{diag}(A) \approx \big(\sum_k z_k \odot A z_k\big) \oslash \big(\sum_k
  z_k \odot z_k\big) = \frac1m \sum_k z_k \odot A z_k`, unbiased since
  :math:`E[z_i z_j] = \delta_{ij}`; the ``i``-th entry of one sample has variance
  :math:`\sum_{j \ne i} A_{ij}^2`. PyHessian (Yao et al. 2020, arXiv:1912.07145) and AdaHessian
  (Yao et al. 2021, arXiv:2006.00719) use it for the Hessian. Here the probes go through the
  operator in blocks of columns (``matmat``: one batched product per block).
* Schraudolph, "Fast curvature matrix-vector products for second-order gradient descent",
  Neural Computation 14(7), 2002 (no arXiv); Martens, "New insights and perspectives on the
  natural gradient method", JMLR 2020, arXiv:1412.1193, Sec. 8. The Hessian of
  :math:`L(\theta) = \ell(f(\theta))` splits as

  .. math:: H = \underbrace{J^\top H_\ell J}_{G} + \underbrace{\textstyle\sum_k
            \frac{\partial \ell}{\partial f_k} \nabla^2_\theta f_k}_{R},

  with :math:`J = \partial f / \partial \theta` and :math:`H_\ell = \nabla^2_f \ell`. ``G``
  (generalized Gauss–Newton) is positive semi-definite when ``ℓ`` is convex in ``f`` (both losses
  here); :math:`Gv = J^\top (H_\ell (Jv))` costs one forward-mode product ``Jv``, one product
  with :math:`H_\ell` in closed form (cross-entropy:
  :math:`(\operatorname{diag}(p) - pp^\top)/N` per scored row, ``p = softmax``; ``mse``:
  ``2/numel``; ``half_mse``: ``1/numel``) and one vector-Jacobian product. ``R`` is computed
  on its own, not as ``H - G``: it is the Hessian of :math:`\theta \mapsto \bar r^\top f(\theta)`
  with the residual :math:`\bar r = \partial \ell / \partial f` held fixed at the current
  parameters, a `HessianOperator` of that loss. For a model linear in its parameters ``R = 0``.
* Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically Occurs at
  the Edge of Stability", ICLR 2021, arXiv:2103.00065. Under full-batch gradient descent with
  step :math:`\eta` the sharpness :math:`\lambda_{\max}(H)` first rises (progressive
  sharpening) until it reaches :math:`2/\eta`, then hovers just above it while the loss keeps
  falling non-monotonically. `edge_of_stability_summary` reads that off a series of
  sharpness values (the ``hessian`` probe's ``sharpness`` at each probe step, or any other):
  the ratio :math:`\eta\lambda_{\max}/2` (1 at the edge), when it first reached the edge, and
  its median over the last part of the run; `edge_of_stability_of_run` reads the probe's series
  and the run's learning-rate series directly.

Units: as `layerlab.lens.hessian` (loss per squared parameter unit).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jvp, vjp, vmap

import layerlab.lens.krylov as krylov
from ..errors import ConfigError, ShapeError, unknown_name
from ._util import LossFn, side_effect_free
from .hessian import HessianOperator, _Bound

__all__ = [
    "OUTPUT_LOSSES",
    "Diagonal",
    "diagonal",
    "exact_diagonal",
    "hessian_diagonal",
    "output_loss",
    "output_hessian_product",
    "output_residual",
    "GaussNewtonOperator",
    "ResidualOperator",
    "gauss_newton_split",
    "EdgeOfStability",
    "edge_of_stability_summary",
    "edge_of_stability_of_run",
]

OUTPUT_LOSSES = ("cross_entropy", "mse", "half_mse")
JACOBIAN_MODES = ("auto", "jvp", "double-vjp")
Forward = Callable[[nn.Module, Any], Tensor]


# ----------------------------------------------------------------------------------------------
# The Hessian diagonal (Bekas et al. 2007)


@dataclass(frozen=True)
class Diagonal:
    """An estimate of ``diag(A)`` (``values``, float64 (P,)) with the standard error of each
    entry (sample std over the probes / sqrt(``n_samples``); zero for an exact diagonal), and
    ``slices`` (parameter name -> slice of the flat vector) when the operator has them."""

    values: Tensor
    standard_error: Tensor
    n_samples: int
    slices: dict[str, slice] | None = None

    def by_parameter(self, shapes: dict[str, torch.Size] | None = None) -> dict[str, Tensor]:
        """The values split by parameter name (flat, or shaped like the parameters with ``shapes``)."""
        if self.slices is None:
            raise ConfigError("this diagonal has no parameter names (it came from an operator without "
                              "`slices`); index `values` directly")
        out = {n: self.values[s] for n, s in self.slices.items()}
        return out if shapes is None else {n: v.reshape(shapes[n]) for n, v in out.items()}


def exact_diagonal(op: krylov.LinearOperator | Tensor, *, block: int = 64) -> Diagonal:
    """The reference form: ``A_ii = e_iᵀ A e_i`` from the products with the unit vectors, ``block``
    columns of the identity at a time (``P`` products in all: for small operators)."""
    op = krylov._as_operator(op)
    if block < 1:
        raise ConfigError(f"block must be a positive integer, got {block}")
    dt = krylov._krylov_dtype(op, None)
    parts = []
    for start in range(0, op.dim, block):
        stop = min(start + block, op.dim)
        E = torch.zeros(op.dim, stop - start, dtype=dt, device=op.device)
        E[torch.arange(start, stop), torch.arange(stop - start)] = 1
        parts.append(krylov._apply_as(op, E)[start:stop].diagonal())
    values = torch.cat(parts).to(torch.float64)
    return Diagonal(values, torch.zeros_like(values), 0, getattr(op, "slices", None))


def diagonal(op: krylov.LinearOperator | Tensor, *, n_samples: int = 100, block: int | None = 32,
             generator: torch.Generator | None = None) -> Diagonal:
    r"""``diag(A)`` by Hutchinson's diagonal estimator: :math:`\frac1m\sum_k z_k \odot A z_k` over
    ``n_samples`` Rademacher probes, ``block`` probes per batched product (None: all at once).
    Unbiased; entry ``i`` has standard deviation :math:`\sqrt{\sum_{j\ne i}A_{ij}^2 / m}`, which
    the returned ``standard_error`` estimates from the samples. Probes from ``generator``
    (default: seed 0), in the products' precision."""
    op = krylov._as_operator(op)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ConfigError(f"n_samples must be an integer >= 2 (a standard error needs two probes), got {n_samples!r}")
    if block is not None and block < 1:
        raise ConfigError(f"block must be a positive integer or None, got {block}")
    gen = krylov._default_generator(generator)
    dt = krylov._krylov_dtype(op, None)
    step = n_samples if block is None else block
    total = torch.zeros(op.dim, dtype=torch.float64, device=op.device)
    squares = torch.zeros_like(total)
    for start in range(0, n_samples, step):
        # drawn probe by probe (rows, then transposed): the same probes whatever the block size
        Z = krylov._rademacher(gen, (min(step, n_samples - start), op.dim), op.device, dt).T
        S = (Z * krylov._apply_as(op, Z)).to(torch.float64)  # column k: z_k ⊙ A z_k
        total += S.sum(1)
        squares += S.square().sum(1)
    mean = total / n_samples
    var = (squares - n_samples * mean.square()).clamp_min(0) / (n_samples - 1)
    return Diagonal(mean, (var / n_samples).sqrt(), n_samples, getattr(op, "slices", None))


def hessian_diagonal(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list,
    *,
    n_samples: int = 100,
    block: int | None = 32,
    params: Sequence[str] | str | None = None,
    generator: torch.Generator | None = None,
    weights: Sequence[float] | None = None,
) -> Diagonal:
    """``diag(H)`` of the mean loss over ``batches`` by `diagonal` (``n_samples`` Hessian-vector
    products, ``block`` at a time). ``Diagonal.by_parameter()`` splits it by parameter name."""
    with side_effect_free(model):
        op = HessianOperator(model, loss_fn, batches, params=params, weights=weights)
        return diagonal(op, n_samples=n_samples, block=block, generator=generator)


# ----------------------------------------------------------------------------------------------
# Losses of the outputs, their gradient and Hessian in closed form


def _parts(batch: Any) -> tuple[Any, Tensor, Tensor | None]:
    """(inputs, targets, mask) of a layerlab ``Batch`` or a tuple/list ``(x, y)``."""
    if hasattr(batch, "inputs") and hasattr(batch, "targets"):
        return batch.inputs, batch.targets, getattr(batch, "mask", None)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1], None
    raise ConfigError(f"a Gauss-Newton batch must be a layerlab Batch or a pair (inputs, targets), got "
                      f"{type(batch).__name__}")


def _default_forward(model: nn.Module, batch: Any) -> Tensor:
    return model(_parts(batch)[0])


def _rows(outputs: Tensor, targets: Tensor, mask: Tensor | None, loss: str) -> tuple[Tensor, Tensor]:
    """The scored outputs as rows ``(N, C)`` and their targets (``(N,)`` classes or ``(N, C)``)."""
    if mask is not None:
        outputs, targets = outputs[mask], targets[mask]
    if loss == "cross_entropy":
        if outputs.dim() < 1 or targets.shape != outputs.shape[:-1]:
            raise ShapeError(f"cross_entropy needs logits (..., C) and class targets (...), got "
                             f"{tuple(outputs.shape)} and {tuple(targets.shape)}")
        return outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)
    if targets.shape != outputs.shape:
        raise ShapeError(f"{loss} needs targets of the outputs' shape {tuple(outputs.shape)}, got "
                         f"{tuple(targets.shape)} (one-hot encode class targets, or reshape)")
    if outputs.dim() < 2:
        return outputs.reshape(-1, 1), targets.reshape(-1, 1)
    return outputs.reshape(outputs.shape[0], -1), targets.reshape(targets.shape[0], -1)


def output_loss(outputs: Tensor, targets: Tensor, loss: str) -> Tensor:
    """``ℓ(f, y)`` on rows ``(N, C)`` (see the module docstring)."""
    if loss == "cross_entropy":
        return F.cross_entropy(outputs, targets)
    if loss == "mse":
        return F.mse_loss(outputs, targets.to(outputs.dtype))
    if loss == "half_mse":
        return 0.5 * F.mse_loss(outputs, targets.to(outputs.dtype))
    raise unknown_name("output loss", loss, OUTPUT_LOSSES)


def output_residual(outputs: Tensor, targets: Tensor, loss: str) -> Tensor:
    """``∂ℓ/∂f`` on rows ``(N, C)`` in closed form: ``(softmax(f) - onehot(y))/N``,
    ``2(f - y)/numel`` or ``(f - y)/numel``."""
    if loss == "cross_entropy":
        onehot = F.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
        return (outputs.softmax(-1) - onehot) / outputs.shape[0]
    scale = {"mse": 2.0, "half_mse": 1.0}.get(loss)
    if scale is None:
        raise unknown_name("output loss", loss, OUTPUT_LOSSES)
    return scale * (outputs - targets.to(outputs.dtype)) / outputs.numel()


def output_hessian_product(outputs: Tensor, U: Tensor, loss: str) -> Tensor:
    """``H_ℓ U`` for ``U`` of the rows' shape ``(N, C)`` or a stack ``(c, N, C)`` of them:
    cross-entropy ``(p ⊙ u - p (pᵀu))/N`` per row, ``p = softmax(f)``; ``mse`` ``2u/numel``;
    ``half_mse`` ``u/numel``."""
    if loss == "cross_entropy":
        p = outputs.softmax(-1)
        return (p * U - p * (p * U).sum(-1, keepdim=True)) / outputs.shape[0]
    scale = {"mse": 2.0, "half_mse": 1.0}.get(loss)
    if scale is None:
        raise unknown_name("output loss", loss, OUTPUT_LOSSES)
    return scale * U / outputs.numel()


class _OutputLoss:
    """``loss_fn(model, batch)`` = ``ℓ(forward(model, batch), y)``: the loss the split is of."""

    def __init__(self, forward: Forward, loss: str) -> None:
        self.forward, self.loss = forward, loss

    def rows(self, model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        _, targets, mask = _parts(batch)
        return _rows(self.forward(model, batch), targets, mask, self.loss)

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        return output_loss(*self.rows(model, batch), self.loss)


class _ResidualLoss(_OutputLoss):
    """``r̄ᵀ f(θ)`` with ``r̄ = ∂ℓ/∂f`` held fixed: its Hessian is the residual part ``R``."""

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        out, targets = self.rows(model, batch)
        return (output_residual(out.detach(), targets, self.loss) * out).sum()


def _check_loss(loss: str) -> None:
    if loss not in OUTPUT_LOSSES:
        raise unknown_name("output loss", loss, OUTPUT_LOSSES)


# ----------------------------------------------------------------------------------------------
# The Gauss-Newton and residual operators


class GaussNewtonOperator(HessianOperator):
    r"""The generalized Gauss–Newton matrix :math:`G = \sum_b w_b J_b^\top H_{\ell,b} J_b` of the
    mean output loss over ``batches``, as a linear operator with `HessianOperator`'s interface
    (``matvec``, ``matmat``, ``dense``, ``top_eigenvalues``, ``top_eigenpairs``, ``trace``,
    ``density``; ``names``, ``slices``, ``dim``, ``dtype``, ``device``, ``weights``).

    ``loss``: one of `OUTPUT_LOSSES`; ``forward(model, batch) -> outputs`` (default
    ``model(inputs)``). ``jacobian``: how ``Jv`` is taken, ``"jvp"`` (forward mode,
    ``torch.func.jvp``), ``"double-vjp"`` (reverse mode only: ``Jv`` is the vector-Jacobian
    product of the linear map ``u ↦ Jᵀu``, for operations without a forward-mode rule) or
    ``"auto"`` (jvp, falling back to double-vjp; the form in use is then in ``jacobian``).
    Each product costs one forward pass with its vector-Jacobian product, plus the ``Jv``;
    ``matmat`` batches the columns with ``vmap`` (``chunk_size`` at a time). The model's
    parameters are read at each product, never modified.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: list,
        *,
        loss: str = "cross_entropy",
        forward: Forward | None = None,
        params: Sequence[str] | str | None = None,
        jacobian: str = "auto",
        chunk_size: int | None = 32,
        weights: Sequence[float] | None = None,
    ) -> None:
        _check_loss(loss)
        if jacobian not in JACOBIAN_MODES:
            raise unknown_name("Jacobian-vector product mode", jacobian, JACOBIAN_MODES)
        self.loss = loss
        self.output_loss = _OutputLoss(forward or _default_forward, loss)
        super().__init__(model, self.output_loss, batches, params=params, mode="forward-over-reverse",
                         chunk_size=chunk_size, weights=weights)
        self.mode = "gauss-newton"
        self.jacobian = jacobian
        self._rows_module = _Bound(model, self.output_loss.rows)

    def __repr__(self) -> str:
        return (f"GaussNewtonOperator(dim={self.dim}, params={len(self.names)}, dtype={self.dtype}, "
                f"loss={self.loss!r}, jacobian={self.jacobian!r}, batches={len(self.batches)})")

    def _rows_of(self, sel: tuple[Tensor, ...], fixed: dict[str, Tensor], batch: Any) -> Tensor:
        values = dict(fixed)
        values.update({"model." + n: t for n, t in zip(self.names, sel)})
        return functional_call(self._rows_module, values, (batch,))[0]

    def _batch_product(self, V: Tensor, batch: Any, form: str) -> Tensor:
        """``J_bᵀ H_ℓ J_b V`` for ``V`` (P,) or (P, c), flat."""
        sel, fixed = self._tensors()
        _, targets, mask = _parts(batch)

        def f(s: tuple[Tensor, ...]) -> Tensor:
            return self._rows_of(s, fixed, batch)

        out, pullback = vjp(f, sel)
        out = out.detach()

        def jv(t: tuple[Tensor, ...]) -> Tensor:
            if form == "jvp":
                return jvp(f, (sel,), (t,))[1]
            # Jv = the vector-Jacobian product of the linear map u -> Jᵀu, at any u (here 0)
            return vjp(lambda u: pullback(u)[0], torch.zeros_like(out))[1](t)[0]

        def product(t: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return pullback(output_hessian_product(out, jv(t), self.loss))[0]

        tangent = self._unflatten(V)
        if V.dim() == 1:
            parts = product(tangent)
            return torch.cat([p.reshape(-1).to(self.dtype) for p in parts])
        parts = vmap(product, chunk_size=self.chunk_size)(tangent)
        return torch.cat([p.reshape(V.shape[1], -1).to(self.dtype) for p in parts], dim=1).T

    def _gn(self, V: Tensor, form: str) -> Tensor:
        total = None
        for w, batch in zip(self._w, self.batches):
            part = self._batch_product(V, batch, form) * w
            total = part if total is None else total + part
        return total

    def _apply(self, v: Tensor) -> Tensor:
        return self._resolve(v)

    def _matmat(self, V: Tensor) -> Tensor:
        return self._resolve(V)

    def _resolve(self, V: Tensor) -> Tensor:
        if self.jacobian != "auto":
            return self._gn(V, self.jacobian)
        try:
            out = self._gn(V, "jvp")
        except (RuntimeError, NotImplementedError) as err:
            self.fallback_reason = f"jvp: {type(err).__name__}: {err}"
            self.jacobian = "double-vjp"
            return self._gn(V, "double-vjp")
        self.jacobian = "jvp"
        return out


class ResidualOperator(HessianOperator):
    r"""The residual part :math:`R = H - G = \sum_b w_b \sum_k \bar r_{b,k} \nabla^2_\theta
    f_{b,k}` of the Hessian of the mean output loss over ``batches``, as a `HessianOperator`
    (same interface and product modes) of the loss :math:`\bar r^\top f(\theta)`, the residual
    :math:`\bar r = \partial\ell/\partial f` taken at the current parameters and held fixed
    (see the module docstring). Indefinite in general; zero for a model linear in its
    parameters. ``loss``, ``forward``: as `GaussNewtonOperator`."""

    def __init__(
        self,
        model: nn.Module,
        batches: list,
        *,
        loss: str = "cross_entropy",
        forward: Forward | None = None,
        params: Sequence[str] | str | None = None,
        mode: str = "auto",
        chunk_size: int | None = 32,
        weights: Sequence[float] | None = None,
    ) -> None:
        _check_loss(loss)
        self.loss = loss
        super().__init__(model, _ResidualLoss(forward or _default_forward, loss), batches, params=params,
                         mode=mode, chunk_size=chunk_size, weights=weights)

    def __repr__(self) -> str:
        return (f"ResidualOperator(dim={self.dim}, params={len(self.names)}, dtype={self.dtype}, "
                f"loss={self.loss!r}, mode={self.mode!r}, batches={len(self.batches)})")


def gauss_newton_split(
    model: nn.Module,
    batches: list,
    *,
    loss: str = "cross_entropy",
    forward: Forward | None = None,
    params: Sequence[str] | str | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[HessianOperator, GaussNewtonOperator, ResidualOperator]:
    """``(H, G, R)``: the Hessian of the mean output loss over ``batches`` and its Gauss–Newton
    and residual parts, three operators on the same parameters (``H = G + R``)."""
    out_loss = _OutputLoss(forward or _default_forward, loss)
    _check_loss(loss)
    H = HessianOperator(model, out_loss, batches, params=params, weights=weights)
    G = GaussNewtonOperator(model, batches, loss=loss, forward=forward, params=params, weights=weights)
    R = ResidualOperator(model, batches, loss=loss, forward=forward, params=params, weights=weights)
    return H, G, R


# ----------------------------------------------------------------------------------------------
# The edge of stability over a run (Cohen et al. 2021)


@dataclass(frozen=True)
class EdgeOfStability:
    """Sharpness against ``2/η`` along a run. ``ratio = η λ_max / 2`` at each recorded step (1 at
    the edge of stability); ``initial_ratio``, ``max_ratio``; ``reach_step``: the first step whose
    ratio is at least ``reach`` (None if never); ``tail_median``: the median ratio over the last
    ``tail`` fraction of the recorded steps; ``sharpened``: the ratio rose from below ``reach`` to
    at least ``reach`` (progressive sharpening); ``at_edge``: ``tail_median`` lies within
    ``band``."""

    steps: Tensor
    ratio: Tensor
    initial_ratio: float
    max_ratio: float
    reach_step: int | None
    tail_median: float
    sharpened: bool
    at_edge: bool

    def as_dict(self) -> dict[str, float]:
        return {"initial_ratio": self.initial_ratio, "max_ratio": self.max_ratio,
                "reach_step": math.nan if self.reach_step is None else float(self.reach_step),
                "tail_median": self.tail_median, "sharpened": float(self.sharpened),
                "at_edge": float(self.at_edge)}


def edge_of_stability_summary(
    steps: Sequence[int] | Tensor,
    sharpness: Sequence[float] | Tensor,
    lr: float | Sequence[float] | Tensor,
    *,
    tail: float = 0.5,
    reach: float = 0.9,
    band: tuple[float, float] = (0.8, 1.2),
) -> EdgeOfStability:
    """Summarize a sharpness series (``sharpness[i]`` = ``λ_max(H)`` at ``steps[i]``) against
    the gradient-descent threshold ``2/lr`` (``lr``: one step size, or one per recorded step)."""
    s = torch.as_tensor(steps, dtype=torch.float64).reshape(-1)
    lam = torch.as_tensor(sharpness, dtype=torch.float64).reshape(-1)
    eta = torch.as_tensor(lr, dtype=torch.float64).reshape(-1)
    if s.numel() < 2 or lam.shape != s.shape:
        raise ShapeError(f"steps and sharpness must be two series of the same length >= 2, got "
                         f"{s.numel()} and {lam.numel()}")
    if eta.numel() == 1:
        eta = eta.expand_as(lam)
    if eta.shape != lam.shape or not bool((eta > 0).all()):
        raise ConfigError("lr must be one positive step size or one per recorded step")
    if not 0 < tail <= 1:
        raise ConfigError(f"tail must be a fraction in (0, 1], got {tail}")
    if not band[0] < band[1]:
        raise ConfigError(f"band must be (low, high) with low < high, got {band}")
    order = torch.argsort(s)
    s, lam, eta = s[order], lam[order], eta[order]
    ratio = eta * lam / 2
    hit = torch.nonzero(ratio >= reach).reshape(-1)
    reach_step = int(s[hit[0]]) if hit.numel() else None
    n_tail = max(1, math.ceil(tail * ratio.numel()))
    tail_median = float(ratio[-n_tail:].median())
    initial = float(ratio[0])
    return EdgeOfStability(
        steps=s, ratio=ratio, initial_ratio=initial, max_ratio=float(ratio.max()), reach_step=reach_step,
        tail_median=tail_median, sharpened=initial < reach and reach_step is not None,
        at_edge=band[0] <= tail_median <= band[1])


def edge_of_stability_of_run(
    sharpness: Sequence[tuple[int, float]],
    lr: float | Sequence[tuple[int, float]],
    **options: Any,
) -> EdgeOfStability:
    """`edge_of_stability_summary` of a run's series: ``sharpness`` as ``(step, value)`` pairs (the
    ``hessian`` probe's ``hessian/sharpness``, e.g. ``Recorder.series("probe", "hessian/sharpness")``)
    and ``lr`` a number or the run's ``(step, lr)`` series (``Recorder.series("train", "lr")``):
    each probe step takes the last learning rate logged at or before it (the first one before
    any is logged). ``options``: those of `edge_of_stability_summary`."""
    pairs = sorted((int(t), float(v)) for t, v in sharpness)
    if isinstance(lr, (int, float)):
        rates = [float(lr)] * len(pairs)
    else:
        logged = sorted((int(t), float(v)) for t, v in lr)
        if not logged:
            raise ConfigError("the lr series is empty; pass the run's learning rate as a number")
        steps = torch.tensor([t for t, _ in logged])
        at = torch.searchsorted(steps, torch.tensor([t for t, _ in pairs]), right=True) - 1
        rates = [logged[max(int(i), 0)][1] for i in at]
    return edge_of_stability_summary([t for t, _ in pairs], [v for _, v in pairs], rates, **options)
