"""A plain ReLU MLP trained on layerlab's digits splits: the model the feature-instrument measurements
(VCI, WDiscOOD, PatternNet, interaction bases) observe. One thread, weights and batches from ``seed``."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...tasks import build_task


def digits_splits() -> dict[str, tuple[Tensor, Tensor]]:
    """``{"train" | "val" | "test": (inputs (N, 64) float32 in [0, 1], labels (N,))}``."""
    task = build_task("digits")
    train = task.train_batch(0, torch.Generator())  # batch size <= 0: the whole training split
    out = {"train": (train.inputs.float(), train.targets)}
    for split in ("val", "test"):
        b = task.eval_set(split)
        out[split] = (b.inputs.float(), b.targets)
    return out


def relu_mlp(d_in: int, width: int, depth: int, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width if depth else d_in, d_out))


def check(width: int, depth: int, steps: int, lr: float) -> None:
    if width < 1 or depth < 1 or steps < 1 or not lr > 0:
        raise ConfigError(f"need width, depth, steps >= 1 and lr > 0; got {width}, {depth}, {steps}, {lr}")


def train_mlp(x: Tensor, y: Tensor, seed: int, *, width: int, depth: int, steps: int, lr: float,
              n_classes: int | None = None, batch: int = 64, at: Sequence[int] = (),
              callback: Callable[[int, nn.Sequential], None] | None = None) -> nn.Sequential:
    """Adam on cross-entropy, minibatches drawn with replacement; ``callback(step, model)`` at the
    steps in ``at`` (0: before training). The global RNG is forked, not touched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = relu_mlp(x.shape[1], width, depth, int(y.max()) + 1 if n_classes is None else n_classes)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        marks = set(at)
        for step in range(steps + 1):
            if step in marks and callback is not None:
                net.eval()
                callback(step, net)
                net.train()
            if step == steps:
                break
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    return net


def penultimate(net: nn.Sequential, x: Tensor) -> Tensor:
    """The input of the last Linear layer (float64)."""
    with torch.no_grad():
        return net[:-1](x).double()


def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())
