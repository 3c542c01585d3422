"""A suite's training time, projected from timed steps: this checkout against another (e.g. the code
before the fused scans), measured in one run.

A full `recall` run takes hours on 2 cores, so this script times each (task, model) cell of a
suite instead: ``--steps`` training steps of the cell's spec (its task, model at the suite's
parameter budget, batch size, optimizer; first learning rate and seed) through `Trainer.fit`,
and one validation pass. A run's projected time is ``steps x step + evaluations x validation``
(every ``eval_every`` steps; a run that reaches its target early is shorter, so this is the
upper bound a suite without early stops would take); the suite's is the sum over its runs
divided by ``--workers``. With ``--against DIR`` (a source tree: ``DIR/src/layerlab``), each cell
is timed in turns by this checkout and by DIR, each in a fresh subprocess on ``--threads``
threads, and their ratios printed.

    LAYERLAB_DATA_DIR=... python benchmarks/suites.py recall state-tracking [--against /tmp/before]
        [--steps 20] [--threads 1] [--workers 2]

Make the older tree with e.g. ``mkdir /tmp/before && git archive 6de8403^ | tar -x -C /tmp/before``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def time_cell(suite_name: str, task_label: str, model_label: str, steps: int) -> dict[str, float]:
    """In this process: (time per training step, time of one validation pass), seconds."""
    from layerlab.arena.suite import expand, load_suite
    from layerlab.train import Trainer

    plans = [p for p in expand(load_suite(suite_name)) if (p.task_label, p.model_label) == (task_label, model_label)]
    spec = plans[0].spec
    short = replace(spec, train=replace(spec.train, steps=steps, eval_every=0, target=None, time_budget_s=None))
    trainer = Trainer(short)
    result = trainer.fit()
    t0 = time.perf_counter()
    trainer.task.evaluate(trainer.model, "val", batch_size=spec.train.eval_batch_size)
    evaluation = time.perf_counter() - t0
    return {"step": result.results["train"]["time_per_step_ms"] / 1e3, "eval": evaluation}


def cells(suite_name: str) -> list[dict]:
    """Every cell of the suite with its runs' steps and evaluation counts."""
    from layerlab.arena.suite import expand, load_suite

    out: dict[tuple[str, str], dict] = {}
    for p in expand(load_suite(suite_name)):
        tr = p.spec.train
        evals = (tr.steps // tr.eval_every if tr.eval_every else 0) + 1  # and the final evaluation
        cell = out.setdefault((p.task_label, p.model_label),
                              {"task": p.task_label, "model": p.model_label, "runs": 0, "steps": 0, "evals": 0})
        cell["runs"] += 1
        cell["steps"] += tr.steps
        cell["evals"] += evals
    return list(out.values())


def in_subprocess(src: Path, *args: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src / "src"), OMP_NUM_THREADS=str(threads))
    code = ("import json, sys, torch; torch.set_num_threads(%d); sys.path.insert(0, %r); import suites; "
            "print(json.dumps(getattr(suites, sys.argv[1])(*sys.argv[2:-1], int(sys.argv[-1])) "
            "if sys.argv[1] == 'time_cell' else suites.cells(sys.argv[2])))") % (threads, str(HERE / "benchmarks"))
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{src}: {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suites", nargs="+")
    ap.add_argument("--against", type=Path, default=None, help="another source tree to compare with")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    trees = {"this": HERE} | ({"against": args.against.resolve()} if args.against else {})
    print(f"{args.steps} timed steps per cell, {args.threads} thread(s) per process; projected suite time = "
          f"sum over runs / {args.workers} workers, without early stops")
    for suite_name in args.suites:
        grid = in_subprocess(HERE, "cells", suite_name, "0", threads=args.threads)
        totals = {name: 0.0 for name in trees}
        print(f"\nsuite {suite_name}: {sum(c['runs'] for c in grid)} runs")
        print(f"{'task':10} {'model':22} {'runs':>4} " + " ".join(f"{name + ' step ms':>17} {name + ' run s':>13}" for name in trees)
              + ("   ratio" if len(trees) > 1 else ""))
        for cell in grid:
            row, per_run = [], {}
            for name, src in trees.items():  # in turns, so both see the same machine
                t = in_subprocess(src, "time_cell", suite_name, cell["task"], cell["model"], str(args.steps),
                                  threads=args.threads)
                total = cell["steps"] * t["step"] + cell["evals"] * t["eval"]
                totals[name] += total
                per_run[name] = total / cell["runs"]
                row.append(f"{t['step'] * 1e3:17.1f} {per_run[name]:13.0f}")
            ratio = f"   {per_run['against'] / per_run['this']:.2f}x" if len(trees) > 1 else ""
            print(f"{cell['task']:10} {cell['model']:22} {cell['runs']:4d} " + " ".join(row) + ratio, flush=True)
        print("projected suite time: " + ", ".join(f"{name} {totals[name] / args.workers / 60:.1f} min" for name in trees)
              + (f" (speed-up {totals['against'] / totals['this']:.2f}x)" if len(trees) > 1 else ""))


if __name__ == "__main__":
    main()
