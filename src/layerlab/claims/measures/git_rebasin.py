r"""Git Re-Basin: the loss barrier between two independently trained networks, before and after
aligning one to the other by weight matching.

Paper: Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", 2022 (ICLR 2023), arXiv:2209.04836: after permuting the hidden units of model B to
match model A (weight matching, Algorithm 1: ``max_π Σ_ℓ <W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}^T>``), the loss
along the straight path ``θ(α) = (1 − α) θ_A + α π(θ_B)`` barely rises ("zero-barrier linear mode
connectivity" for wide enough models), and "wider models exhibit better linear mode connectivity"
(Sec. 5).

For each width in ``d_models`` the measurement trains two classifier backbones on digits with
the project's Trainer (run seeds ``2 seed`` and ``2 seed + 1``: different initializations and
batch orders), aligns B to A (``lens.permutation.align``) and measures on the test split, with
``lens.landscape.barrier`` (Entezari et al.'s definition, ``alphas`` points on [0, 1])::

    before = B(θ_A, θ_B),   after = B(θ_A, π(θ_B))      (mean cross-entropy, nats)

Reported per width ``w``: ``before_w``, ``after_w``, ``ratio_w = after_w / before_w``, the endpoints'
test loss and accuracy, the sweeps weight matching took and its ``distance`` reduction
``||θ_A − π(θ_B)|| / ||θ_A − θ_B||``. ``error = after − before`` at the widest width (below 0 when
alignment lowers the barrier) and, with two or more widths, ``width_error = after(widest) −
after(narrowest)`` (below 0 when the aligned barrier is lower for the wider model).
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ...lens import landscape, permutation
from ...registry import Paper
from ...spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from ...tasks import build_task
from . import register_measure
from ._fit import fit, one_thread

PAPER = Paper("Git Re-Basin: Merging Models modulo Permutation Symmetries", 2022, "2209.04836")


def cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def _spec(seed: int, d_model: int, n_layers: int, steps: int, lr: float, batch_size: int) -> RunSpec:
    return RunSpec(task=TaskSpec("digits"),
                   model=ModelSpec(backbone="classifier", channel="mlp", norm="layernorm", d_model=d_model,
                                   n_layers=n_layers),
                   optim=OptimSpec(name="adamw", lr=lr, warmup_steps=max(1, steps // 20)),
                   train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0, log_every=max(1, steps // 10)),
                   seed=seed)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).double().mean())


@register_measure("git_rebasin_barrier", metric="error", paper=PAPER)
def git_rebasin_barrier(seed: int, *, d_models: list[int] = (32, 256), n_layers: int = 2, steps: int = 600,
                        lr: float = 3e-3, batch_size: int = 64, alphas: int = 21) -> dict[str, float]:
    widths = [int(w) for w in d_models]
    if not widths or any(w < 2 for w in widths) or widths != sorted(set(widths)):
        raise ConfigError(f"git_rebasin_barrier: d_models must be increasing widths >= 2, got {list(d_models)}")
    if n_layers < 1 or steps < 1 or batch_size < 1 or not (lr > 0 and math.isfinite(lr)) or alphas < 3:
        raise ConfigError("git_rebasin_barrier: need n_layers, steps, batch_size >= 1, a finite lr > 0, alphas >= 3")
    task = build_task("digits")
    test = task._make_eval_set("test")
    batches = [(test.inputs, test.targets)]
    out: dict[str, float] = {}
    with one_thread():
        for w in widths:
            models = []
            for run_seed in (2 * seed, 2 * seed + 1):
                model, _, status = fit(_spec(run_seed, w, n_layers, steps, lr, batch_size), task)
                if status != "done":
                    raise ConfigError(f"git_rebasin_barrier: the run at width {w}, seed {run_seed} ended {status!r}; "
                                      "lower lr")
                models.append(model.eval())
            a, b = models
            start = time.perf_counter()
            aligned, _, info = permutation.align(a, b, seed=seed)
            out[f"align_seconds_{w}"] = time.perf_counter() - start
            before = landscape.barrier(a, b, cross_entropy, batches, alphas=alphas)
            after = landscape.barrier(a, aligned, cross_entropy, batches, alphas=alphas)
            out[f"before_{w}"], out[f"after_{w}"] = before, after
            out[f"ratio_{w}"] = after / before if before > 0 else math.nan
            out[f"loss_a_{w}"] = float(cross_entropy(a, batches[0]).detach())
            out[f"loss_b_{w}"] = float(cross_entropy(b, batches[0]).detach())
            out[f"accuracy_a_{w}"] = _accuracy(a, test.inputs, test.targets)
            out[f"accuracy_b_{w}"] = _accuracy(b, test.inputs, test.targets)
            out[f"sweeps_{w}"] = info["sweeps"]
            out[f"distance_ratio_{w}"] = info["distance_after"] / info["distance_before"]
    wide, narrow = widths[-1], widths[0]
    out["error"] = out[f"after_{wide}"] - out[f"before_{wide}"]
    out["width_error"] = out[f"after_{wide}"] - out[f"after_{narrow}"] if len(widths) > 1 else math.nan
    return out
