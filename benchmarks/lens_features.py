"""The issue-17b feature instruments (VCI, WDiscOOD, PatternNet, interaction bases): the time of each,
in training steps of the model it observes, and the overhead of their probes on a training run.

    python benchmarks/lens_features.py [--width 128] [--run-steps 1000] [--every 100]
                                       [--threads 1] [--skip-run]

Part 1, instruments, each called once through its public function (repeated, median, when a call
takes under 0.3 s), in seconds and in units of one training step (forward, backward, AdamW on a
batch of 256) of the model it observes:
  - ``variability.vci`` of the classifier's head input on 256 digits examples, and
    ``vci_reference`` (the d x d pinv formula) beside it;
  - ``wdiscood.fit_wlda`` on those features and ``wdiscood_score`` + ``mahalanobis_score`` of
    256 examples;
  - ``patterns.fit_patterns`` (two-component) of a ReLU MLP 64-w-w-10 on 256 examples,
    ``signal_quality`` (filter estimator, held out) of its first layer, ``pattern_attribution``;
  - ``interaction_basis.interaction_bases`` (LIB and PCA) of that MLP on 256 examples,
    ``interaction_graph`` in LIB and ``degeneracy``.
Part 2, probes: one ``Trainer.fit()`` of the classifier (``--width``, 2 blocks) on `digits` (batch
64, ``--run-steps``) without probes (first and last) and with each probe every ``--every`` steps
(probe batch 256): overhead in-run = (fit - its training time) / its training time (the Trainer's
clock) against the issue's 10%, the whole-fit ratio beside it, and whether the training loss curve
is bit-identical. Probes: variability, degeneracy.

Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerlab.lens import dynamics, interaction_basis, patterns, variability, wdiscood
from layerlab.models import build_model
from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer

PROBES = ("variability", "degeneracy")


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


def relu_mlp(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def instruments(width: int) -> None:
    task = build_task("digits")
    torch.manual_seed(0)
    clf = build_model(ModelSpec(backbone="classifier", d_model=width, n_layers=2), task)
    mlp = relu_mlp(width)
    batch = task.train_batch(256, torch.Generator().manual_seed(0))
    x, y = batch.inputs.float(), batch.targets
    held = task.train_batch(256, torch.Generator().manual_seed(1)).inputs.float()
    step_clf, step_mlp = step_seconds(clf, x, y), step_seconds(mlp, x, y)
    head = dynamics.capture(clf, x, ["head"], kind="input")["head"]
    model = wdiscood.fit_wlda(head, y)
    fitted = patterns.fit_patterns(mlp, x)
    w0 = mlp[0].weight.detach()
    lib = interaction_basis.interaction_bases(mlp, x, "lib")
    sizes: dict[str, Any] = {}

    def bases(kind: str) -> None:
        sizes[kind] = [b.size for b in interaction_basis.interaction_bases(mlp, x, kind)]

    rows = [
        ("variability.vci, head input (256 x d)", lambda: variability.vci(head, y), step_clf),
        ("variability.vci_reference (pinv formula)", lambda: variability.vci_reference(head, y), step_clf),
        ("wdiscood.fit_wlda, head input", lambda: wdiscood.fit_wlda(head, y), step_clf),
        ("wdiscood + mahalanobis scores, 256 examples",
         lambda: (wdiscood.wdiscood_score(model, head), wdiscood.mahalanobis_score(model, head)), step_clf),
        ("patterns.fit_patterns (two-component), ReLU MLP", lambda: patterns.fit_patterns(mlp, x), step_mlp),
        ("patterns.signal_quality (filter), layer 1, held out",
         lambda: patterns.signal_quality(x, w0, "filter", x_eval=held), step_mlp),
        ("patterns.pattern_attribution, 256 examples", lambda: patterns.pattern_attribution(mlp, x, y, fitted), step_mlp),
        ("interaction_bases (LIB), ReLU MLP", lambda: bases("lib"), step_mlp),
        ("interaction_bases (PCA), ReLU MLP", lambda: bases("pca"), step_mlp),
        ("interaction_graph (LIB)", lambda: interaction_basis.interaction_graph(mlp, x, lib), step_mlp),
        ("interaction_basis.degeneracy", lambda: interaction_basis.degeneracy(mlp, x), step_mlp),
    ]
    print(f"training step: classifier d={width} x2 {step_clf * 1e3:.2f} ms, ReLU MLP 64-{width}-{width}-10 "
          f"{step_mlp * 1e3:.2f} ms (batch 256)")
    print(f"{'instrument':52} {'seconds':>9} {'steps':>9}")
    for label, fn, unit in rows:
        s = timed(fn)
        print(f"{label:52} {s:9.4f} {s / unit:9.1f}")
    print(f"basis sizes per node layer: LIB {sizes['lib']}, PCA {sizes['pca']}")


def fit(spec: RunSpec) -> tuple[float, float, list[float]]:
    """(wall seconds of fit(), the Trainer's training time without probes, the loss curve)."""
    trainer = Trainer(spec)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    assert result.status == "done", result
    return wall, result.train_time_s, [v for _, v in trainer.recorder.series("train", "loss")]


def run(width: int, steps: int, every: int) -> None:
    def spec(names: tuple[str, ...]) -> RunSpec:
        return RunSpec(task=TaskSpec("digits"), model=ModelSpec(backbone="classifier", d_model=width, n_layers=2),
                       optim=OptimSpec(lr=1e-3, warmup_steps=50),
                       train=TrainSpec(steps=steps, batch_size=64, eval_every=0, log_every=1),
                       probes=ProbeSpec(names=names, schedule="every", every=every))

    first, _, curve = fit(spec(()))
    results = [(name, *fit(spec((name,)))) for name in PROBES]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--run-steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-run", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    instruments(args.width)
    if not args.skip_run:
        run(args.width, args.run_steps, args.every)


if __name__ == "__main__":
    main()
