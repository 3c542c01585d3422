"""Helpers of the measurements that train: one run through the Trainer (no store), on one thread."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ...models import build_model
from ...spec import RunSpec
from ...train import MemoryRecorder, Trainer


@contextmanager
def one_thread() -> Iterator[None]:
    """Small matrices on a shared 2-core machine run fastest on one thread; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fit(spec: RunSpec, task: Any) -> tuple[nn.Module, dict[str, dict[str, float]], str]:
    """Train ``spec``: (the trained model, its final results by split plus ``train_loss``, its status).
    ``train_loss`` is the mean training loss of the last logging window (inf if it diverged)."""
    recorder = MemoryRecorder()
    trainer = Trainer(spec, task=task, recorder=recorder)
    result = trainer.fit()
    series = recorder.series("train", "loss")
    last = series[-1][1] if series and result.status == "done" else math.inf
    return trainer.model, {**result.results, "train_loss": {"loss": last if math.isfinite(last) else math.inf}}, result.status


def initial_model(spec: RunSpec, task: Any) -> nn.Module:
    """The model ``Trainer(spec)`` starts from (built from the run's seed, as the Trainer does)."""
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        return build_model(spec.model, task)


def final_loss(results: dict[str, dict[str, float]], status: str, split: str = "val") -> float:
    """The final loss on ``split`` ("val", "test" or "train_loss"); inf for a run that did not finish."""
    v = results.get(split, {}).get("loss", math.inf) if status == "done" else math.inf
    return v if math.isfinite(v) else math.inf


def refined_argmin(log_lrs: Sequence[float], losses: Sequence[float]) -> tuple[float, bool]:
    """The grid's best log-lr refined by the vertex of the parabola through it and its two neighbours
    (clamped to within one grid step); at an edge of the grid (or beside a diverged run), the grid
    point itself. Returns (log-lr, at_edge)."""
    i = min(range(len(losses)), key=lambda k: losses[k])
    if i in (0, len(losses) - 1):
        return log_lrs[i], True
    y0, y1, y2 = losses[i - 1], losses[i], losses[i + 1]
    curv = y0 - 2 * y1 + y2
    if not all(map(math.isfinite, (y0, y1, y2))) or curv <= 0:
        return log_lrs[i], False
    h = log_lrs[i + 1] - log_lrs[i]
    shift = max(-1.0, min(1.0, (y0 - y2) / (2 * curv)))
    return log_lrs[i] + h * shift, False


def train_relu_mlp(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], seed: int, steps: int, lr: float, *,
                   n_out: int | None = None, eps: float = 0.0, pgd_steps: int = 0) -> nn.Sequential:
    """A ReLU MLP ``x.shape[1] -> hidden... -> n_out`` (default ``max y + 1``), PyTorch's default init
    drawn under ``seed``, trained by Adam (``lr``) on ``steps`` minibatches of 64 drawn from ``seed``;
    with ``eps > 0`` adversarially, by ``pgd_steps`` PGD steps of size ``2.5 eps / pgd_steps`` in the
    ``l_inf`` ball of radius ``eps`` around each batch. The global RNG is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sizes = [x.shape[1], *hidden, int(y.max()) + 1 if n_out is None else n_out]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*layers[:-1])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=gen)
            xb, yb = x[idx], y[idx]
            if eps > 0:
                delta = torch.zeros_like(xb)
                for _ in range(pgd_steps):
                    delta.requires_grad_(True)
                    (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xb + delta), yb), delta)
                    delta = (delta.detach() + 2.5 * eps / pgd_steps * g.sign()).clamp(-eps, eps)
                xb = xb + delta
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net


def fit_full_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> None:
    """``steps`` full-batch Adam steps (``lr``) on the cross-entropy of ``model(x)`` against ``y``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` whose argmax logit is ``y``."""
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())
