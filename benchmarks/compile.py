"""`train.compile` on the quick suite's models, on this machine: eager vs compiled training steps.

For each (task, model) cell of the `quick` suite, at the suite's sizes (the width its parameter
budget gives, its batch size), one training step as the trainer takes it (batch from the task,
forward, loss, backward, gradient clipping, AdamW step) is timed eagerly and with the model
compiled in place (`layerlab.train.compile.compile_model`, TorchInductor). Printed per cell: the
median eager and compiled step over ``--steps`` steps after warm-up, their ratio, the compile time
(the first compiled step, minus an eager step), and the break-even: the number of steps after
which compiling has paid for itself. Last, the suite's projected training time (its steps per run
times the median step, summed over runs) eager and compiled, compile time included.

    LAYERLAB_DATA_DIR=... python benchmarks/compile.py [--steps 30] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from layerlab.arena.suite import expand, load_suite
from layerlab.models import build_model
from layerlab.tasks import build_task
from layerlab.train.compile import compile_model
from layerlab.train.optim import build_optimizer


def step_times(spec, task, compiled: bool, steps: int) -> tuple[float, float]:
    """(first step, median of the next `steps` steps), seconds."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task)
    if compiled:
        torch._dynamo.reset()
        compile_model(model)
    optimizer = build_optimizer(model, spec.optim)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps + 3):
        batch = task.train_batch(spec.train.batch_size, gen)
        t0 = time.perf_counter()
        loss = task.loss(model(batch.inputs), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[3:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plans = expand(load_suite("quick"))
    cells: dict[tuple[str, str], list] = {}
    for p in plans:
        cells.setdefault((p.task_label, p.model_label), []).append(p)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.steps} steps")
    print(f"{'task':10} {'model':18} {'eager ms':>9} {'compiled ms':>12} {'ratio':>6} {'compile s':>10} {'break-even':>11}")
    eager_total = compiled_total = 0.0
    for (task_label, model_label), runs in cells.items():
        spec = runs[0].spec
        task = build_task(spec.task.name, **spec.task.params)
        _, eager = step_times(spec, task, False, args.steps)
        first, compiled = step_times(spec, task, True, args.steps)
        compile_s = max(first - eager, 0.0)
        gain = eager - compiled
        breakeven = f"{compile_s / gain:,.0f} steps" if gain > 0 else "never"
        print(f"{task_label:10} {model_label:18} {eager * 1e3:9.1f} {compiled * 1e3:12.1f} {eager / compiled:6.2f} "
              f"{compile_s:10.1f} {breakeven:>11}", flush=True)
        for p in runs:
            eager_total += p.spec.train.steps * eager
            compiled_total += p.spec.train.steps * compiled + compile_s
    print(f"quick suite, projected training time of its {len(plans)} runs (1 worker): eager {eager_total:.0f} s, "
          f"compiled {compiled_total:.0f} s (ratio {eager_total / compiled_total:.2f})")


if __name__ == "__main__":
    main()
