"""Exact Gauss-Newton (EGN): a regularised generalised Gauss-Newton step, solved in batch space.

Korbit, Adeoye, Bemporad & Zanon, "Exact Gauss-Newton Optimization for Training Deep Neural
Networks" (2024, arXiv:2405.14402). For a mini-batch of b examples with c model outputs each, the
loss L(θ) = (1/b) Σ_i ℓ(y_i, f(x_i; θ)) has gradient g = (1/b) Jᵀ r and generalised Gauss-Newton
Hessian H_GN = (1/b) Jᵀ Q J, where J (bc × p) is the Jacobian of the stacked outputs with
respect to the p parameters, r = ∇_f Σ_i ℓ (bc) and Q = ∇²_f Σ_i ℓ (bc × bc, block diagonal: the
loss's Hessian in the outputs). The Levenberg-Marquardt direction

    d = −(H_GN + λ I_p)⁻¹ g = −(Jᵀ Q J + b λ I_p)⁻¹ Jᵀ r          (reference form: p × p)

equals, by the Duncan-Guttman (Woodbury) identity (Jᵀ Q J + bλ I_p)⁻¹ Jᵀ = Jᵀ (Q J Jᵀ + bλ I_bc)⁻¹,

    d = −Jᵀ (Q J Jᵀ + b λ I_bc)⁻¹ r,                               (fast form: bc × bc)

and the step is θ ← θ + α d. For the squared error ℓ = ½‖f − y‖² (Q = I), r is the residual
f − y and d = −Jᵀ(J Jᵀ + bλ I)⁻¹ r; for the cross-entropy, Q_i = diag(p_i) − p_i p_iᵀ (the
softmax's Hessian) and r_i = p_i − onehot(y_i), which is the exact GGN, so both are supported.
Q and r come from the run's own loss by automatic differentiation in the outputs (any loss that
is a sum of per-example terms convex in the outputs gives the exact GGN).

Here: ``transform_loss`` records the batch the step trains on (after every batch transform),
``transform_gradients`` replaces every parameter's gradient by −d (computed at the current
parameters from J, r, Q of that batch; the run's gradient clipping has no effect), and the run's
optimizer must be SGD (checked in ``make_optimizer``): with momentum 0 and no weight decay, SGD at
learning rate α takes exactly the paper's step θ + α d, the schedule giving α per step. SGD
momentum then acts as heavy-ball momentum on d (the paper's EGN also has a momentum variant; its
line search and adaptive λ are not implemented). Vector tasks only (a token model's b·L·V outputs
make the batch-space system far too large); ``max_outputs`` caps bc.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, hessian, jacrev

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("Exact Gauss-Newton Optimization for Training Deep Neural Networks", 2024, "2405.14402")


def gauss_newton_step(jac: Tensor, r: Tensor, q: Tensor, lam: float, b: int) -> Tensor:
    """Reference form: d = −(Jᵀ Q J + b λ I_p)⁻¹ Jᵀ r, a p × p solve."""
    p = jac.shape[1]
    h = jac.mT @ q @ jac + (b * lam) * torch.eye(p, dtype=jac.dtype, device=jac.device)
    return -torch.linalg.solve(h, jac.mT @ r)


def gauss_newton_step_fast(jac: Tensor, r: Tensor, q: Tensor, lam: float, b: int) -> Tensor:
    """Fast form (Duncan-Guttman): d = −Jᵀ (Q J Jᵀ + b λ I_bc)⁻¹ r, a bc × bc solve; where the
    batch has more outputs than the model has parameters (bc > p), the p × p system is the smaller
    one (and the better conditioned: Q J Jᵀ then has rank <= p < bc), solved by Cholesky."""
    m, p = jac.shape
    if m > p:
        h = jac.mT @ q @ jac + (b * lam) * torch.eye(p, dtype=jac.dtype, device=jac.device)
        return -torch.cholesky_solve((jac.mT @ r)[:, None], torch.linalg.cholesky(h))[:, 0]
    k = q @ (jac @ jac.mT) + (b * lam) * torch.eye(m, dtype=jac.dtype, device=jac.device)
    return -jac.mT @ torch.linalg.solve(k, r)


def residual_and_curvature(loss: Callable[[Tensor], Tensor], outputs: Tensor) -> tuple[Tensor, Tensor]:
    """r = ∇_f (b · loss) and Q = ∇²_f (b · loss) at the (b, c) outputs, flattened to (bc,), (bc, bc)."""
    f = outputs.detach()
    b = f.shape[0]

    def total(flat: Tensor) -> Tensor:
        return b * loss(flat.view_as(f))

    flat = f.reshape(-1)
    return jacrev(total)(flat), hessian(total)(flat)


def output_jacobian(model: nn.Module, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """J (bc × p): the Jacobian of the stacked model outputs in the parameters, in ``params`` order."""
    def outputs(ps: dict[str, Tensor]) -> Tensor:
        return functional_call(model, ps, (inputs,)).reshape(-1)

    jac = jacrev(outputs)(params)
    return torch.cat([jac[n].reshape(jac[n].shape[0], -1) for n in params], dim=1)


@register("method", "exact_gauss_newton", paper=PAPER)
class ExactGaussNewton(Method):
    """Exact Gauss-Newton (Korbit et al., "Exact Gauss-Newton Optimization for Training Deep
    Neural Networks", 2024, arXiv:2405.14402): the Levenberg-Marquardt direction of the generalised
    Gauss-Newton matrix, d = −(Jᵀ Q J + bλ I)⁻¹ Jᵀ r = −Jᵀ (Q J Jᵀ + bλ I)⁻¹ r, solved in batch
    space (bc × bc instead of p × p). The gradient becomes −d and the run's SGD (momentum 0: the
    paper's θ + α d) takes the step. Hooks: make_optimizer (checks SGD), loss (records the batch),
    gradients.

    Options: ``lam`` (λ > 0, default 1e-3), ``max_outputs`` (refuse batches with more than this
    many outputs bc, default 4096).
    """

    def __init__(self, *, lam: float = 1e-3, max_outputs: int = 4096) -> None:
        if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ConfigError(f"exact_gauss_newton: lam (the damping λ) must be a finite number > 0, got {lam!r}")
        if isinstance(max_outputs, bool) or not (isinstance(max_outputs, int) and max_outputs >= 1):
            raise ConfigError(f"exact_gauss_newton: max_outputs must be an integer >= 1, got {max_outputs!r}")
        self.lam, self.max_outputs = float(lam), max_outputs
        self.batch: Any = None

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if run.input_kind != "vector":
            raise ConfigError(f"exact_gauss_newton needs a vector task; this task has {run.input_kind!r} inputs, "
                              "whose batch x length x vocabulary outputs make the batch-space solve too large. "
                              "Use it on a vector task (linear_teacher, digits, ...)")

    def make_optimizer(self, model: nn.Module, default: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        opt = default()
        if not isinstance(opt, torch.optim.SGD):
            raise ConfigError(f"exact_gauss_newton steps along the Gauss-Newton direction with SGD; the run's "
                              f"optimizer is {type(opt).__name__}. Set optim.name = 'sgd' (momentum = 0 and "
                              "weight_decay = 0 for the paper's step θ + α d, α = the learning rate)")
        return opt

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        self.batch = batch
        return loss

    def direction(self, model: nn.Module, batch: Any) -> tuple[list[nn.Parameter], Tensor]:
        """The parameters (those that train) and the EGN direction d over them, flattened."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        inputs = batch.inputs.to(named[0][1].dtype) if batch.inputs.is_floating_point() else batch.inputs
        params = {n: p.detach() for n, p in named}
        with torch.no_grad():
            outputs = functional_call(model, params, (inputs,))
        b, m = outputs.shape[0], outputs.numel()
        if m > self.max_outputs:
            raise ConfigError(f"exact_gauss_newton: the batch has {m} outputs (batch {b} x {m // b}), more than "
                              f"max_outputs = {self.max_outputs}; lower train.batch_size or raise max_outputs")
        wide = torch.promote_types(outputs.dtype, torch.float32)
        r, q = residual_and_curvature(lambda f: self.run.loss(f, batch), outputs)
        jac = output_jacobian(model, params, inputs)
        d = gauss_newton_step_fast(jac.to(wide), r.to(wide), q.to(wide), self.lam, b)
        return [p for _, p in named], d

    def transform_gradients(self, model: nn.Module, step: int) -> None:
        if self.batch is None:
            raise ConfigError("exact_gauss_newton: no batch recorded this step (transform_loss was not called)")
        params, d = self.direction(model, self.batch)  # torch.func: differentiates whatever the grad mode
        with torch.no_grad():
            offset = 0
            for p in params:
                n = p.numel()
                g = (-d[offset:offset + n]).view(p.shape).to(p.dtype)
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.copy_(g)
                offset += n
        self.batch = None
