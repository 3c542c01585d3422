"""What the Ray executor costs per run: a suite of short runs under Ray against the local executor.

The same suite (``--runs`` runs of ``--steps`` steps each: the digits MLP, so a run's training is
short and scheduling shows) is trained into a fresh store by

- the local executor with ``--workers`` spawned processes (``--threads`` each),
- the local executor in this process (one worker: no processes to start), and
- the Ray executor with ``--workers`` tasks in flight (``--threads`` CPUs each) on a local runtime
  started once beforehand (its start-up is reported apart: a cluster is started once, not per suite).

Both are timed from the call to ``run_suite`` to its return, in alternating rounds. The local
executor spawns its processes (and imports torch in them) at every call; Ray starts its worker
processes at the first suite and keeps them, so Ray's first round ("cold") is reported apart from
the later ones ("warm"). The overhead per run is (Ray − local) / runs; the ratio is Ray / local.
Metrics of the two stores are compared: they must be equal.

    python benchmarks/ray_overhead.py [--runs 16] [--steps 30] [--workers 2] [--threads 1] [--repeats 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from rich.console import Console

from layerlab.arena.executor import LocalExecutor
from layerlab.arena.ray_executor import RayExecutor, import_ray
from layerlab.arena.runner import run_suite
from layerlab.arena.store import Store
from layerlab.arena.suite import parse_suite

SUITE = """
name = "ray-overhead"
seeds = {seeds}
lr = [3e-3]
[train]
steps = {steps}
batch_size = 32
eval_every = {steps}
log_every = 5
[[tasks]]
name = "digits"
[[models]]
label = "mlp"
backbone = "classifier"
channel = "mlp"
d_model = 32
n_layers = 1
"""


def timed(suite, root: Path, executor) -> float:
    t0 = time.perf_counter()
    run_suite(suite, Store(root), executor=executor, console=Console(file=open(os.devnull, "w")), show_board=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    suite = parse_suite(tomllib.loads(SUITE.format(seeds=list(range(args.runs)), steps=args.steps)))

    ray = import_ray(local=True)  # loopback only
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers * args.threads, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    start_up = time.perf_counter() - t0
    local, inproc, remote = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            local.append(timed(suite, Path(tmp) / f"local{i}", LocalExecutor(args.workers, args.threads)))
            inproc.append(timed(suite, Path(tmp) / f"inproc{i}", LocalExecutor(1, args.threads)))
            remote.append(timed(suite, Path(tmp) / f"ray{i}", RayExecutor(workers=args.workers, threads=args.threads)))
        a, b = Store(Path(tmp) / "local0"), Store(Path(tmp) / "ray0")
        same = all(a.metrics(r["run_id"]) == b.metrics(r["run_id"]) for r in a.runs())
    ray.shutdown()
    lo, cold = statistics.median(local), remote[0]
    warm = statistics.median(remote[1:]) if len(remote) > 1 else float("nan")
    print(f"{args.runs} runs of {args.steps} steps, {args.workers} workers x {args.threads} threads, "
          f"{args.repeats} alternating rounds (load {os.getloadavg()[0]:.1f} at the end)")
    print(f"  Ray runtime start-up (once): {start_up:.1f} s")
    print(f"  local executor (median): {lo:.2f} s   ({', '.join(f'{t:.2f}' for t in local)})")
    print(f"  local executor in this process, 1 worker (median): {statistics.median(inproc):.2f} s   "
          f"({', '.join(f'{t:.2f}' for t in inproc)})")
    print(f"  Ray executor, cold / warm (median): {cold:.2f} / {warm:.2f} s   ({', '.join(f'{t:.2f}' for t in remote)})")
    for name, t in (("cold", cold), ("warm", warm)):
        print(f"  Ray {name} / local = {t / lo:.2f}; per run {(t - lo) / args.runs * 1000:+.0f} ms")
    print(f"  metrics equal: {same}")

if __name__ == "__main__":
    main()
