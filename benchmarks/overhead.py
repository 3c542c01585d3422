"""Trainer overhead: its time per step divided by a bare PyTorch loop's, same model and data;
and the cost of a training method that does nothing (issue 15: at most 1.02x a run without one).

Both loops do the same math on the same batches: draw a batch from the task, forward, loss,
backward, gradient clipping, AdamW step with the warmup + cosine learning rate. The trainer adds
its bookkeeping (loss window, NaN check, logging into a SQLite store). Runs alternate, and the
median of the repeats is compared, so both see the same machine conditions.

The method part trains the same spec with and without ``methods = [{ name = "noop" }]``, a
method registered here that overrides every per-step hook and changes nothing, alternating the
two, and prints the ratio of their median times per step (target <= 1.02).

    python benchmarks/overhead.py [--steps 200] [--repeats 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch
from torch import nn

from layerlab.arena.store import Store, StoreRecorder
from layerlab.models import build_model
from layerlab.spec import ModelSpec, OptimSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer
from layerlab.train.optim import build_optimizer, lr_at
from layerlab.methods import Method
from layerlab.registry import register
from layerlab.spec import MethodSpec
from layerlab.train.trainer import DATA_SEED_SALT


@register("method", "noop")
class Noop(Method):
    """A method whose every per-step hook is called and changes nothing (benchmark only)."""

    def transform_batch(self, batch, step):
        return batch

    def transform_loss(self, loss, outputs, batch, step):
        return loss

    def transform_gradients(self, model, step):
        pass

    def after_step(self, model, step):
        pass


def make_spec(steps: int) -> RunSpec:
    return RunSpec(task=TaskSpec("mqar"), model=ModelSpec(d_model=64, n_layers=2, mixer_options={"n_heads": 4}),
                   optim=OptimSpec(lr=1e-3, warmup_steps=10),
                   train=TrainSpec(steps=steps, batch_size=32, eval_every=0, log_every=10))


def bare_loop(spec: RunSpec, task) -> float:
    """Seconds per step of the plainest loop that does the trainer's math."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model, task)
    opt = build_optimizer(model, spec.optim)
    gen = torch.Generator().manual_seed(spec.seed ^ DATA_SEED_SALT)
    model.train()
    t0 = time.perf_counter()
    for step in range(spec.train.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec.train.steps, spec.optim)
        batch = task.train_batch(spec.train.batch_size, gen)
        loss = task.loss(model(batch.inputs), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
    return (time.perf_counter() - t0) / spec.train.steps


def trainer_loop(spec: RunSpec, task, store: Store) -> float:
    """Seconds per training step of the Trainer, logging into a real store (evaluation excluded)."""
    rid = store.add_run(spec)
    result = Trainer(spec, task=task, recorder=StoreRecorder(store, rid)).fit()
    assert result.status == "done"
    return result.train_time_s / result.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 gives the steadiest timings)")
    ap.add_argument("--part", choices=("all", "trainer", "methods"), default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = make_spec(args.steps)
    task = build_task(spec.task.name, **spec.task.params)
    task.eval_set("val")  # build evaluation data outside the timed region
    if args.part in ("all", "trainer"):
        trainer_vs_bare(spec, task, args)
    if args.part in ("all", "methods"):
        method_vs_none(spec, task, args)


def trainer_vs_bare(spec: RunSpec, task, args: argparse.Namespace) -> None:
    bare, trainer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        bare_loop(make_spec(10), task)  # warm up
        for _ in range(args.repeats):
            bare.append(bare_loop(spec, task))
            trainer.append(trainer_loop(spec, task, store))
    b, t = statistics.median(bare), statistics.median(trainer)
    print(f"model: {spec.model.label()} d={spec.model.d_model} layers={spec.model.n_layers}, task mqar, "
          f"batch {spec.train.batch_size}, {args.steps} steps x {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"bare loop   : {1000 * b:.2f} ms/step (median; all: {', '.join(f'{1000 * x:.2f}' for x in bare)})")
    print(f"trainer     : {1000 * t:.2f} ms/step (median; all: {', '.join(f'{1000 * x:.2f}' for x in trainer)})")
    print(f"overhead ratio trainer / bare = {t / b:.3f} by medians, {min(trainer) / min(bare):.3f} by minima "
          "(target <= 1.03)")


def method_vs_none(spec: RunSpec, task, args: argparse.Namespace) -> None:
    noop = dataclasses.replace(spec, methods=(MethodSpec("noop"),))
    plain, with_noop = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for _ in range(args.repeats):
            plain.append(trainer_loop(spec, task, store))
            with_noop.append(trainer_loop(noop, task, store))
    p, n = statistics.median(plain), statistics.median(with_noop)
    print(f"no method   : {1000 * p:.2f} ms/step (median; all: {', '.join(f'{1000 * x:.2f}' for x in plain)})")
    print(f"noop method : {1000 * n:.2f} ms/step (median; all: {', '.join(f'{1000 * x:.2f}' for x in with_noop)})")
    # the hooks' own cost, free of the machine's noise: the four per-step calls of the stack alone
    from layerlab.methods import MethodStack
    stack, model, batch = MethodStack.build(noop.methods), None, None
    t0 = time.perf_counter()
    for step in range(20_000):
        batch = stack.transform_batch(batch, step)
        stack.transform_loss(None, None, batch, step)
        stack.transform_gradients(model, step)
        stack.after_step(model, step)
    hooks = (time.perf_counter() - t0) / 20_000
    print(f"noop hooks  : {1e6 * hooks:.2f} us/step = {hooks / p:.5f} of a step without methods")
    pairs = statistics.median(b / a for a, b in zip(plain, with_noop))
    print(f"method overhead ratio noop / none = {n / p:.3f} by medians, {min(with_noop) / min(plain):.3f} by minima, "
          f"{pairs:.3f} median of paired ratios (target <= 1.02)")


if __name__ == "__main__":
    main()
