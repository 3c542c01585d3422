"""Weight matching (`lens.permutation.align`, Git Re-Basin): its time, in training steps of the
model it aligns, on layerlab's classifier backbone (issue 17 item 4).

    python benchmarks/lens_permutation.py [--widths 128 512] [--expansion 4] [--train-steps 200]
                                          [--threads 1]

Models: the classifier backbone on `digits` (2 residual pre-RMSNorm GELU MLP blocks, d_model =
each of ``--widths``, hidden = ``--expansion`` x d_model). For each width, three pairs:
``init``, two independent initializations (seeds 0 and 1); ``trained``, the same two trained
``--train-steps`` AdamW steps (lr 1e-3, batch 64) by the project's Trainer; ``permuted``, a
trained model and a randomly permuted copy of it (the easy case: alignment recovers it exactly).
Per pair: the wall time of one ``align()`` call (the permutation spec, coordinate descent with an
exact assignment per step, the permuted copy), its sweeps and assignment problems solved, the
share of the time spent in the assignment solver, and the time in units of one training step
(forward, backward and AdamW on a batch of 256, median of 10), beside the time of one
``landscape.barrier`` on the test split (21 points) that the alignment precedes.

Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerlab.lens import landscape, permutation
from layerlab.models import build_model
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 10) -> float:
    """Median time of one training step (forward, backward, AdamW step) on a copy of `model`."""
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_align(a: nn.Module, b: nn.Module) -> dict[str, Any]:
    """One align() call, with the time inside the assignment solver counted."""
    solver, spent, calls = permutation.solve_assignment, [0.0], [0]

    def counting(score, v=None):
        t0 = time.perf_counter()
        out = solver(score, v)
        spent[0] += time.perf_counter() - t0
        calls[0] += 1
        return out

    permutation.solve_assignment = counting
    try:
        t0 = time.perf_counter()
        _, _, info = permutation.align(a, b)
        seconds = time.perf_counter() - t0
    finally:
        permutation.solve_assignment = solver
    return {"seconds": seconds, "sweeps": info["sweeps"], "lap": calls[0], "lap_share": spent[0] / seconds,
            "distance": info["distance_after"] / info["distance_before"]}


def train(spec: RunSpec, task: Any) -> nn.Module:
    trainer = Trainer(spec, task=task)
    trainer.fit()
    return trainer.model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--expansion", type=float, default=4.0)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = build_task("digits")
    test = task.eval_set("test")
    batch = task.train_batch(256, torch.Generator().manual_seed(0))
    loss = lambda m, b: F.cross_entropy(m(b[0]), b[1])  # noqa: E731
    print(f"align() on the classifier backbone (2 MLP blocks, expansion {args.expansion}), digits; "
          f"{args.threads} thread(s), {args.train_steps} training steps for 'trained'")
    print(f"{'width':>6} {'hidden':>6} {'pair':9} {'align s':>8} {'steps':>8} {'sweeps':>6} {'LAPs':>5} "
          f"{'LAP %':>6} {'dist ratio':>10} {'barrier s':>9}")
    for w in args.widths:
        model_spec = ModelSpec(backbone="classifier", channel="mlp", d_model=w, n_layers=2,
                               channel_options={"expansion": args.expansion})
        specs = [RunSpec(task=TaskSpec("digits"), model=model_spec, optim=OptimSpec(lr=1e-3, warmup_steps=10),
                         train=TrainSpec(steps=args.train_steps, batch_size=64, eval_every=0,
                                         log_every=max(1, args.train_steps // 10)), seed=s) for s in (0, 1)]
        inits = []
        for s in (0, 1):
            torch.manual_seed(s)
            inits.append(build_model(model_spec, task).eval())
        trained = [train(s, task) for s in specs]
        spec = permutation.permutation_spec(trained[0])
        shuffled = permutation.apply_permutation(
            trained[0], permutation.random_permutations(spec, generator=torch.Generator().manual_seed(2)), spec)
        step = step_seconds(inits[0], batch.inputs, batch.targets)
        t0 = time.perf_counter()
        landscape.barrier(trained[0], trained[1], loss, [(test.inputs, test.targets)], alphas=21)
        barrier_s = time.perf_counter() - t0
        hidden = round(args.expansion * w)
        for name, (a, b) in (("init", inits), ("trained", trained), ("permuted", (trained[0], shuffled))):
            r = timed_align(a, b)
            print(f"{w:>6} {hidden:>6} {name:9} {r['seconds']:>8.2f} {r['seconds'] / step:>8.0f} {r['sweeps']:>6} "
                  f"{r['lap']:>5} {100 * r['lap_share']:>5.0f}% {r['distance']:>10.3f} {barrier_s:>9.2f}")
        print(f"{'':>6} one training step (batch 256): {1e3 * step:.2f} ms")


if __name__ == "__main__":
    main()
