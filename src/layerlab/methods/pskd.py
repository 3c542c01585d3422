"""PS-KD: train on targets softened by the model's own predictions from the previous epoch.

Kim, Ji, Yoon & Hwang, "Self-Knowledge Distillation with Progressive Refinement of Targets"
(2020, arXiv:2006.12000; ICCV 2021), Sec. 3: at epoch t the model is trained on the soft targets

    y^S_t(x) = (1 − α_t) y(x) + α_t P^S_{t−1}(x),    α_t = α_T · t / T,

with y the one-hot target, P^S_{t−1}(x) the model's own prediction from epoch t − 1 (the student of
the last epoch is the teacher of this one) and T the number of epochs; the loss is the
cross-entropy H(y^S_t, P^S_t(x)) = −Σ_k y^S_{t,k} log P^S_{t,k}(x).

Epochs in a step-based run. A run here counts optimizer steps and draws its batches with
replacement (digits) or fresh (generated tasks), so an "epoch" is ``epoch_steps`` steps
(``ceil(train rows / batch size)`` makes it one pass's worth of examples), epochs are numbered
t = 1, ..., T = ceil(steps / epoch_steps) and step s lies in epoch t = s // epoch_steps + 1.
P^S_{t−1}(x) is the prediction of a frozen *snapshot* of the model taken at the end of epoch
t − 1 (eval mode, evaluated on the batch as the model sees it). The paper's code instead stores,
for each training example, the prediction the model made when it last saw that example during
epoch t − 1; batches here carry no example index, and a snapshot gives every input (fresh, mixed,
augmented) a teacher. In epoch 1 there is no past prediction, and the target is the one-hot y.

Hooks: ``transform_loss`` (replaces the task's cross-entropy by the soft-target cross-entropy on the
scored positions: vectors, or masked tokens) and ``after_step`` (takes the snapshot at each epoch
end). The snapshot's weights are in ``state_dict``, so a resumed run continues exactly. It costs one
extra forward pass of the snapshot per step. Use it first in a list with batch methods that keep
the targets (a method that recomputes the loss from mixed labels, such as mixup, is overridden).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Paper, register
from .base import Method, RunContext

PAPER = Paper("Self-Knowledge Distillation with Progressive Refinement of Targets", 2020, "2006.12000")


def alpha_at(epoch: int, epochs: int, alpha_T: float) -> float:
    """α_t = α_T · t / T (epochs numbered from 1)."""
    return alpha_T * epoch / epochs


def soft_targets(targets: Tensor, teacher_probs: Tensor | None, alpha: float, n_classes: int) -> Tensor:
    """(1 − α) y + α P_{t−1}: one-hot `targets` (...,) mixed with the teacher's probabilities (..., C);
    the one-hot y alone (float64) where there is no teacher yet."""
    one_hot = F.one_hot(targets, n_classes)
    if teacher_probs is None:
        return one_hot.to(torch.float64)
    return (1.0 - alpha) * one_hot.to(teacher_probs.dtype) + alpha * teacher_probs


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over rows of −Σ_k target_k log softmax(logits)_k."""
    return -(target.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1).mean()


@register("method", "pskd", paper=PAPER)
class PSKD(Method):
    """PS-KD (Kim et al., "Self-Knowledge Distillation with Progressive Refinement of Targets",
    2020, arXiv:2006.12000): at epoch t, minimise H((1 − α_t) y + α_t P^S_{t−1}(x), P^S_t(x)) with
    α_t = α_T · t / T; P^S_{t−1} from a snapshot of the model at the end of epoch t − 1.
    Hooks: loss, after_step. Options: ``alpha_T`` (default 0.8, in [0, 1]; the paper's value),
    ``epoch_steps`` (steps per epoch, default 20: one pass over digits' 1,257 training rows at batch 64).
    """

    def __init__(self, *, alpha_T: float = 0.8, epoch_steps: int = 20) -> None:
        if isinstance(alpha_T, bool) or not isinstance(alpha_T, (int, float)) or not 0.0 <= alpha_T <= 1.0:
            raise ConfigError(f"pskd: alpha_T must be a number in [0, 1] (the final weight of the model's own "
                              f"predictions in the targets; the paper uses 0.8), got {alpha_T!r}")
        if isinstance(epoch_steps, bool) or not isinstance(epoch_steps, int) or epoch_steps < 1:
            raise ConfigError(f"pskd: epoch_steps must be an integer >= 1 (optimizer steps per epoch, e.g. "
                              f"ceil(training rows / batch size)), got {epoch_steps!r}")
        self.alpha_T = float(alpha_T)
        self.epoch_steps = epoch_steps
        self.teacher: nn.Module | None = None
        self.has_teacher = False  # a snapshot exists (from the end of epoch 1 on)

    def setup(self, model: nn.Module, run: RunContext) -> None:
        self.epochs = max(1, math.ceil(run.steps / self.epoch_steps))
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def epoch(self, step: int) -> int:
        """The 1-based epoch of 0-based optimizer step `step`."""
        return step // self.epoch_steps + 1

    def alpha(self, step: int) -> float:
        return alpha_at(self.epoch(step), self.epochs, self.alpha_T)

    @torch.no_grad()
    def teacher_probs(self, inputs: Tensor) -> Tensor | None:
        """P^S_{t−1}(x): the snapshot's softmax, or None before the first snapshot."""
        if not self.has_teacher:
            return None
        logits = self.teacher(inputs)
        return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)

    def transform_loss(self, loss: Tensor, outputs: Tensor, batch: Any, step: int) -> Tensor:
        probs = self.teacher_probs(batch.inputs)
        target = soft_targets(batch.targets, probs, self.alpha(step), outputs.shape[-1])
        if batch.mask is None:
            return soft_cross_entropy(outputs, target)
        return soft_cross_entropy(outputs[batch.mask], target[batch.mask])

    def after_step(self, model: nn.Module, step: int) -> None:
        if (step + 1) % self.epoch_steps == 0:  # the end of an epoch: this student teaches the next one
            self.teacher.load_state_dict(model.state_dict())
            self.has_teacher = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "has_teacher": self.has_teacher, "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.teacher.load_state_dict(state["teacher"])
        self.has_teacher = bool(state["has_teacher"])
