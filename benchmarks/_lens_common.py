"""What the lens benchmark scripts share: timing a call (median of repeats), one training step of a
model as the unit, a ReLU MLP to observe, and the probe-overhead run on the digits classifier.
Imported by the sibling scripts (``benchmarks/`` is on ``sys.path`` when one of them runs)."""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.train import Trainer


def timed(fn: Callable[[], Any], *, quick: float = 0.3, repeats: int = 5) -> float:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first >= quick:
        return first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 10) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    out = timed(step, quick=0.0, repeats=repeats)
    model.load_state_dict(state)
    return out


def relu_mlp(width: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def fit(spec: RunSpec) -> tuple[float, float, list[float]]:
    """(wall seconds of fit(), the Trainer's training time without probes, the loss curve)."""
    trainer = Trainer(spec)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    assert result.status == "done", result
    return wall, result.train_time_s, [v for _, v in trainer.recorder.series("train", "loss")]


def probe_overhead(width: int, steps: int, every: int, probes: tuple[str, ...]) -> None:
    """Part 2 of the lens benchmarks: one fit of the digits classifier without probes (first and
    last) and one with each of ``probes`` every ``every`` steps; prints in-run and whole-fit overhead
    and whether the loss curve is bit-identical."""
    def spec(names: tuple[str, ...]) -> RunSpec:
        return RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=width, n_layers=2),
                       optim=OptimSpec(lr=1e-3, warmup_steps=50),
                       train=TrainSpec(steps=steps, batch_size=64, eval_every=0, log_every=1),
                       probes=ProbeSpec(names=names, schedule="every", every=every))

    first, _, curve = fit(spec(()))
    results = [(name, *fit(spec((name,)))) for name in probes]
    last, _, _ = fit(spec(()))
    print(f"\nrun: classifier d={width} x2 on digits, batch 64, {steps} steps; probes every {every} steps "
          f"(probe batch 256); without probes {first:.2f} s / {last:.2f} s")
    print("overhead in-run: (fit - its training time) / its training time (robust to load between fits); "
          "whole: (fit - the faster fit without probes) / that fit")
    print(f"{'probe':20} {'fit s':>8} {'train s':>8} {'in-run':>8} {'whole':>8} {'<= 10%':>7} {'identical':>10}")
    for name, wall, train, probed in results:
        inrun, whole = (wall - train) / train, (wall - min(first, last)) / min(first, last)
        print(f"{name:20} {wall:8.2f} {train:8.2f} {inrun:8.1%} {whole:8.1%} {'yes' if inrun <= 0.10 else 'NO':>7} "
              f"{'yes' if probed == curve else 'NO':>10}")


def print_timings(rows: list[tuple[str, Callable[[], Any], float]], width: int, step_clf: float,
                  step_mlp: float) -> None:
    """One line per (label, call, unit step seconds): the call's time and that time in training steps."""
    print(f"training step: classifier d={width} x2 {step_clf * 1e3:.2f} ms, ReLU MLP 64-{width}-{width}-10 "
          f"{step_mlp * 1e3:.2f} ms (batch 256)")
    print(f"{'instrument':52} {'seconds':>9} {'steps':>9}")
    for label, fn, unit in rows:
        s = timed(fn)
        print(f"{label:52} {s:9.4f} {s / unit:9.1f}")


def run_main(doc: str, instruments: Callable[[int], None], probes: tuple[str, ...]) -> None:
    """The command line of a lens benchmark: part 1 ``instruments(width)``, part 2 the overhead of
    ``probes`` (unless ``--skip-run``)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--run-steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-run", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    instruments(args.width)
    if not args.skip_run:
        probe_overhead(args.width, args.run_steps, args.every, probes)
