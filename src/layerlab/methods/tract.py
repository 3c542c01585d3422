"""TrAct: train the first layer's pre-activations, not its weights.

Petersen, Borgelt & Ermon, "TrAct: Making First-layer Pre-Activations Trainable" (NeurIPS 2024,
arXiv:2410.23970). For a first layer z = W x (x: n inputs, W: m × n, a batch of b inputs as the
columns of x, n × b), gradient descent moves W by −η ∇_z L xᵀ, so how far the pre-activations
move depends on the pixel values. TrAct instead (i) takes a gradient step on the pre-activations,
the proposal z⋆ = z − η b ∇_z L (each example's pre-activation moved like an embedding row by its
own loss), and (ii) chooses the weights that fit the proposal, a ridge least-squares problem

    W⋆ = argmin_W ‖z⋆ − W x‖²_F + λ b ‖W − W_old‖²_F,

whose closed form is the paper's update

    W⋆ = W − η ∇_z L xᵀ (x xᵀ / b + λ I_n)⁻¹.

λ > 0 (the paper's default 0.1, for standardised inputs) interpolates: λ → ∞ gives plain gradient
descent with the step scaled by 1/λ; λ → 0 fits the proposal exactly. The bias is trained as usual.

Here the layer's weight gradient is replaced by the TrAct direction, so the run's own optimizer
applies it, as the authors' release does (a custom backward of the first layer): since the
ordinary gradient is ∇_W L = ∇_z L xᵀ, the direction is

    G = ∇_W L (x xᵀ / b + λ I_n)⁻¹            (reference form: an n × n solve)
      = (1/λ) ∇_W L (I_n − x (λ b I_b + xᵀ x)⁻¹ xᵀ)   (batch-space form, Woodbury: a b × b solve),

the second used when the batch is smaller than the input width. With SGD this is exactly W⋆ (η =
the learning rate); with Adam(W) the optimizer's moments are taken of G instead of ∇_W L, which
is how the paper combines TrAct with Adam ("TrAct with different optimizers"). The run's
gradient clipping acts before (G is linear in the clipped gradient). Hooks: ``setup`` (a forward
pre-hook on the first layer records its training-mode input x) and ``transform_gradients``.
Vector models only: a token model's first layer is an embedding, whose pre-activations already
train this way. Inputs (*, n) are flattened to b = their number of rows.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("TrAct: Making First-layer Pre-Activations Trainable", 2024, "2410.23970")


def tract_direction(grad_w: Tensor, x: Tensor, lam: float) -> Tensor:
    """Reference form: G = ∇_W L (xᵀx/b + λ I_n)⁻¹ with x as rows (b, n), ∇_W L (m, n)."""
    b, n = x.shape
    a = x.mT @ x / b + lam * torch.eye(n, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(a, grad_w.mT).mT  # a is symmetric: (a⁻¹ ∇ᵀ)ᵀ = ∇ a⁻¹


def tract_direction_fast(grad_w: Tensor, x: Tensor, lam: float) -> Tensor:
    """Fast form: the n × n Cholesky solve, or the b × b one (Woodbury) when b < n."""
    b, n = x.shape
    if b >= n:
        a = x.mT @ x / b + lam * torch.eye(n, dtype=x.dtype, device=x.device)
        return torch.cholesky_solve(grad_w.mT, torch.linalg.cholesky(a)).mT
    k = x @ x.mT + (lam * b) * torch.eye(b, dtype=x.dtype, device=x.device)
    gx = grad_w @ x.mT  # (m, b)
    return (grad_w - torch.cholesky_solve(gx.mT, torch.linalg.cholesky(k)).mT @ x) / lam


def first_linear(model: nn.Module, name: str | None) -> tuple[str, nn.Linear]:
    """The layer TrAct acts on: the module called `name`, or the first ``nn.Linear`` registered."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise ConfigError(f"tract: the model has no module {name!r}; its Linear layers: "
                              f"{', '.join(linears[:8]) or '(none)'}")
        module = modules[name]
        if not isinstance(module, nn.Linear):
            raise ConfigError(f"tract: module {name!r} is a {type(module).__name__}, not a Linear layer; "
                              "name the model's first Linear layer (the classifier's is 'proj')")
        return name, module
    for n, m in modules.items():
        if isinstance(m, nn.Linear):
            return n, m
    raise ConfigError("tract: the model has no Linear layer to act on; use a vector model "
                      "(backbone = 'classifier') or name the layer with `layer`")


@register("method", "tract", paper=PAPER)
class TrAct(Method):
    """TrAct (Petersen, Borgelt & Ermon, "TrAct: Making First-layer Pre-Activations Trainable",
    2024, arXiv:2410.23970): the first layer's weight is moved to the ridge least-squares fit of a
    gradient step on its pre-activations, W⋆ = W − η ∇_z L xᵀ (x xᵀ/b + λ I)⁻¹; here its gradient
    becomes ∇_W L (x xᵀ/b + λ I)⁻¹ and the run's optimizer (SGD: exactly W⋆; Adam: on that
    direction, as the paper does) applies it. Hooks: setup, gradients.

    Options: ``lam`` (λ > 0, default 0.1, the paper's), ``layer`` (the module name of the first
    layer, e.g. "proj"; default "": the first ``nn.Linear`` the model registers).
    """

    def __init__(self, *, lam: float = 0.1, layer: str = "") -> None:
        if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ConfigError(f"tract: lam (the ridge weight λ) must be a finite number > 0, got {lam!r}; "
                              "the paper's default is 0.1")
        if not isinstance(layer, str):
            raise ConfigError(f"tract: layer must be a module name (text, e.g. 'proj'), got {layer!r}")
        self.lam, self.layer = float(lam), layer
        self.layer_name: str | None = None
        self.module: nn.Linear | None = None
        self.inputs: Tensor | None = None

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if run.input_kind != "vector":
            raise ConfigError(f"tract trains the first layer of a vector model; this task has {run.input_kind!r} "
                              "inputs, whose first layer is an embedding (already trained this way). "
                              "Use it on a vector task (digits, linear_teacher, ...)")
        self.layer_name, self.module = first_linear(model, self.layer or None)
        self.module.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and torch.is_grad_enabled():
            self.inputs = args[0].detach()

    @torch.no_grad()
    def transform_gradients(self, model: nn.Module, step: int) -> None:
        weight = self.module.weight if self.module is not None else None
        if weight is None or weight.grad is None:
            return
        if self.inputs is None:
            raise ConfigError(f"tract: layer {self.layer_name!r} saw no training input this step; "
                              "TrAct needs the first layer to run in the training forward pass")
        wide = torch.promote_types(weight.grad.dtype, torch.float32)
        x = self.inputs.reshape(-1, self.inputs.shape[-1]).to(wide)
        g = tract_direction_fast(weight.grad.to(wide), x, self.lam)
        weight.grad.copy_(g.to(weight.grad.dtype))
        self.inputs = None
