"""Normalize-and-Project (NaP): normalization before each nonlinearity, weights projected back to
their initial norm after every optimizer step.

Lyle, Zheng, Khetarpal, Martens, van Hasselt, Pascanu & Dabney, "Normalization and effective
learning rates in reinforcement learning" (NeurIPS 2024, arXiv:2407.01800). With a normalization
layer after a linear layer, the network is invariant to the scale of that layer's weights,
f(c W) = f(W), and a gradient step of size η on W moves the function like a step of size
η / ‖W‖² on W / ‖W‖: the growth of ‖W‖ over training is a hidden decay of the effective learning
rate, which costs plasticity on non-stationary problems. NaP makes it explicit:

    1. Normalize: insert a normalization layer before every nonlinearity,
       h_l = φ(Norm(W_l h_{l−1} + b_l));
    2. Project: after every optimizer step, put each layer's weights back on the sphere of their
       initial norm,
           W_l ← ‖W_l^(0)‖ · W_l / ‖W_l‖        (‖·‖ the Frobenius norm of the whole layer),

so the effective learning rate stays the one the optimizer's schedule sets. The projection is per
layer (one norm per weight matrix), not per unit: the norm is taken over the whole matrix.

Here: ``setup`` inserts a LayerNorm (layerlab's ``layernorm`` block, gain 1, bias 0) between
``fc1`` and the activation of every two-layer MLP block (``channel = "mlp"``) when ``normalize`` is
true, records ‖W^(0)‖ of every weight matrix (every parameter of two or more dimensions) of the
model after that, and ``after_step`` rescales each of them. Left free: biases and normalization
gains/offsets (vectors), and by default the output head (``project_head``), whose scale is the
logits' temperature and is not followed by a normalization, so the scale-invariance argument
does not hold for it (``project_head = true`` projects it too). Which tensors the paper projects
beyond the hidden weight matrices (norm gains/offsets, output layer) was not verified against its
text here. Norms are computed in float64.
Hooks: ``setup``, ``after_step``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, build, register
from .base import Method, RunContext

PAPER = Paper("Normalization and effective learning rates in reinforcement learning", 2024, "2407.01800")


def project_to_norms(weights: list[Tensor], norms: list[Tensor]) -> None:
    """W ← ‖W^(0)‖ W / ‖W‖ in place, for each weight and its target norm (reference form: one
    tensor at a time, as in the math; a zero tensor is left as it is)."""
    for w, n0 in zip(weights, norms):
        n = torch.linalg.vector_norm(w.detach().double())
        if n > 0:
            w.data.copy_((w.detach().double() * (n0 / n)).to(w.dtype))


class _NormThen(nn.Module):
    """Norm(z) then the nonlinearity φ: what replaces an MLP block's activation."""

    def __init__(self, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.norm, self.act = norm, act

    def forward(self, z: Tensor) -> Tensor:
        return self.act(self.norm(z))


@register("method", "normalize_project", paper=PAPER)
class NormalizeProject(Method):
    """Normalize-and-Project (Lyle et al., "Normalization and effective learning rates in
    reinforcement learning", 2024, arXiv:2407.01800): a normalization layer before every
    nonlinearity, and after every optimizer step each layer's weight matrix projected back to its
    initial (Frobenius) norm, W_l ← ‖W_l^(0)‖ W_l / ‖W_l‖ (per layer, not per unit).
    Hooks: setup, after_step.

    Options: ``normalize`` (insert LayerNorm before the MLP blocks' activations, True),
    ``project_head`` (project the output head too, False).
    """

    def __init__(self, *, normalize: bool = True, project_head: bool = False) -> None:
        for key, value in (("normalize", normalize), ("project_head", project_head)):
            if not isinstance(value, bool):
                raise ConfigError(f"normalize_project: {key} must be true or false, got {value!r}")
        self.normalize, self.project_head = normalize, project_head
        self.weights: list[Tensor] = []
        self.norms: list[Tensor] = []

    def setup(self, model: nn.Module, run: RunContext) -> None:
        if self.normalize:
            blocks = [m for m in model.modules() if isinstance(getattr(m, "fc1", None), nn.Linear)
                      and isinstance(getattr(m, "act", None), nn.Module) and not isinstance(m.act, _NormThen)]
            if not blocks:
                raise ConfigError("normalize_project: the model has no MLP block (fc1 -> act -> fc2) to put a "
                                  "normalization before its nonlinearity; use channel = 'mlp', or "
                                  "normalize = false on a model that already normalizes before its nonlinearities")
            for m in blocks:
                norm = build("norm", "layernorm", m.fc1.out_features).to(device=run.device, dtype=run.dtype)
                m.act = _NormThen(norm, m.act)
        head = getattr(model, "head", None)
        skip = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) and not self.project_head else set()
        self.names = [n for n, p in model.named_parameters() if p.dim() >= 2 and id(p) not in skip]
        params = dict(model.named_parameters())
        self.weights = [params[n] for n in self.names]
        if not self.weights:
            raise ConfigError("normalize_project: the model has no weight matrix to project")
        self.norms = [torch.linalg.vector_norm(w.detach().double()) for w in self.weights]

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        # fast form: all norms in one foreach reduction, one foreach multiply
        wide = [w.double() for w in self.weights]
        now = torch._foreach_norm(wide)
        scales = [torch.where(n > 0, n0 / torch.where(n > 0, n, torch.ones_like(n)), torch.ones_like(n))
                  for n0, n in zip(self.norms, now)]
        torch._foreach_mul_(wide, scales)
        for w, v in zip(self.weights, wide):
            w.copy_(v)

    # the initial norms are part of the run's state: a resumed run projects to the same sphere
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "norms": [float(n) for n in self.norms], "names": list(self.names)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if list(state["names"]) != self.names:
            raise ConfigError("normalize_project: the checkpoint's projected weights differ from this model's")
        self.norms = [torch.tensor(n, dtype=torch.float64) for n in state["norms"]]
