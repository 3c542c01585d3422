"""Seeds at once: K seeds trained separately vs as one vmapped group (`layerlab.train.seed_group`).

Part 1, per (task, model) cell of the `quick` suite at its sizes: the training time of K runs of
``--steps`` steps by the plain Trainer, one after the other, against one SeedGroupTrainer fit of the
same K runs (K = 2 and 4; the real loops, each run's ``train_time_s`` summed: evaluation and
checkpoints excluded). Ratio > 1: the group is faster.

Part 2 (``--suite``): the wall time of the whole `quick` suite with ``--workers 2`` trained into a
fresh store each, without and with ``--vmap-seeds`` (``--max-steps`` caps every task's steps, to fit
a short session; the figure then says so).

    LAYERLAB_DATA_DIR=... python benchmarks/seeds.py [--steps 20] [--repeats 3] [--threads 1] [--suite] [--max-steps N]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import tomllib
import warnings
from pathlib import Path

import torch

from layerlab.arena.suite import expand, load_suite, parse_suite
from layerlab.tasks import build_task
from layerlab.train import Trainer
from layerlab.train.seed_group import SeedGroupTrainer

QUICK = Path(__file__).resolve().parents[1] / "src" / "layerlab" / "arena" / "suites" / "quick.toml"


def train_seconds(spec, task, k: int, steps: int) -> tuple[float, float, str | None]:
    """(K separate Trainer runs, one vmapped group of them): summed training seconds; and the group's
    fallback reason (None: it trained as a group)."""
    base = dataclasses.replace(spec, train=dataclasses.replace(spec.train, steps=steps, eval_every=0, target=None,
                                                               log_every=steps, checkpoint_every=0))
    specs = [dataclasses.replace(base, seed=s) for s in range(k)]
    separate = sum(Trainer(s, task=task).fit().train_time_s for s in specs)
    group = SeedGroupTrainer(specs, task=task)
    together = sum(r.train_time_s for r in group.fit())
    return separate, together, group.fallback_reason


def step_table(steps: int, repeats: int) -> None:
    cells: dict[tuple[str, str], object] = {}
    for p in expand(load_suite("quick")):
        cells.setdefault((p.task_label, p.model_label), p.spec)
    print(f"part 1: {steps} training steps per run, summed train time (s) of K runs, median of {repeats} rounds "
          f"(after a warm-up round); ratio = separate / group")
    print(f"{'task':9} {'model':18} {'K':>2} {'separate':>9} {'group':>8} {'ratio':>6}")
    ratios = {2: [], 4: []}
    for (task_label, model_label), spec in cells.items():
        task = build_task(spec.task.name, **spec.task.params)
        train_seconds(spec, task, 2, 2)  # warm-up: first calls, caches
        for k in (2, 4):
            rounds = [train_seconds(spec, task, k, steps) for _ in range(repeats)]
            sep = statistics.median(r[0] for r in rounds)
            grp = statistics.median(r[1] for r in rounds)
            why = rounds[0][2]
            ratios[k].append(sep / grp)
            note = f"  (trained separately: {why})" if why else ""
            print(f"{task_label:9} {model_label:18} {k:2d} {sep:9.2f} {grp:8.2f} {sep / grp:6.2f}{note}", flush=True)
    for k, r in ratios.items():
        geo = torch.tensor(r).log().mean().exp().item()
        print(f"K = {k}: geometric mean ratio {geo:.2f} (range {min(r):.2f}-{max(r):.2f})")


def suite_wall(max_steps: int | None, workers: int) -> None:
    from rich.console import Console

    from layerlab.arena.executor import LocalExecutor
    from layerlab.arena.runner import run_suite
    from layerlab.arena.store import Store

    data = tomllib.loads(QUICK.read_text())
    if max_steps is not None:
        for t in data["tasks"]:
            train = t.setdefault("train", {})
            train["steps"] = min(train.get("steps", data.get("train", {}).get("steps", 1000)), max_steps)
    suite = parse_suite(data)
    walls = {}
    for vmap_seeds in (False, True):
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            counts = run_suite(suite, Store(root), executor=LocalExecutor(workers, vmap_seeds=vmap_seeds),
                               console=Console(quiet=True), show_board=False)
            walls[vmap_seeds] = time.perf_counter() - t0
            print(f"part 2: quick suite{f' (steps capped at {max_steps})' if max_steps else ''}, --workers {workers}"
                  f"{' --vmap-seeds' if vmap_seeds else ''}: {walls[vmap_seeds]:.0f} s, {counts}", flush=True)
    print(f"suite wall time ratio (without / with --vmap-seeds): {walls[False] / walls[True]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for part 1")
    ap.add_argument("--suite", action="store_true", help="also part 2: the quick suite's wall time")
    ap.add_argument("--max-steps", type=int, help="part 2: cap every task's steps")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-steps", action="store_true", help="only part 2")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*batching rule.*")  # vmap's per-op fallback warning
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if not args.skip_steps:
        step_table(args.steps, args.repeats)
    if args.suite:
        suite_wall(args.max_steps, args.workers)


if __name__ == "__main__":
    main()
