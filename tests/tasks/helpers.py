"""Helpers for the task tests: models that answer through a task's oracle, or uniformly."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerlab.tasks import Batch, Task


class OracleModel(nn.Module):
    """Logits = one-hot of the task's oracle, computed from the inputs alone."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.anchor = nn.Parameter(torch.zeros(()))  # evaluate() reads the device off a parameter

    def forward(self, inputs: Tensor) -> Tensor:
        garbage = torch.full_like(inputs, -1)  # the oracle must not read the targets
        pred = self.task.oracle(Batch(inputs, garbage, None))
        return F.one_hot(pred, self.task.n_outputs).float()


class ConstantModel(nn.Module):
    """Equal logits everywhere: a uniform guess (argmax is class 0)."""

    def __init__(self, n_outputs: int) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, inputs: Tensor) -> Tensor:
        shape = inputs.shape[:1] if inputs.is_floating_point() else inputs.shape
        return torch.zeros(*shape, self.n_outputs)


def rows(x: Tensor) -> set[tuple]:
    """The rows of a 2-D tensor as a set of tuples."""
    return {tuple(r) for r in x.tolist()}


def train_rows(task: Task, n_batches: int, batch_size: int, seed: int = 1) -> set[tuple]:
    g = torch.Generator().manual_seed(seed)
    out: set[tuple] = set()
    for _ in range(n_batches):
        out |= rows(task.train_batch(batch_size, g).inputs)
    return out
