"""Instruments of `layerlab.lens`: the time of each, in training steps of the model it observes,
and the overhead of probes on a training run. One run; ratios against references measured in it.

    python benchmarks/lens.py [--device cpu] [--seq-length 32] [--slq 4 16] [--run-steps 1000]
                              [--every 100] [--run-width 128] [--skip-run] [--skip-instruments]

Part 1, instruments. Two models: (a) layerlab's classifier backbone, 2 residual MLP layers of
width 512 (hidden width 512: ``channel_options={"expansion": 1}``) on `digits`, batch 256; (b) a
4-layer width-128 attention sequence model (4 heads, MLP 512) on `mqar`, batch 32. Each
instrument is called once through its public function (repeated, median, when a call takes
under 0.3 s), after a warm-up of the torch.func machinery (one Hessian-vector product, one small
NTK), and reported in seconds and in units of one training step of its model (forward, backward
and AdamW step on the same batch; median of 10). Hessian instruments also report how many
Hessian-vector products (HVPs) they took, counted at ``HessianOperator.matmat``. Settings are the
defaults except where a row says otherwise: SLQ density (default 8 probes x 64 steps stores an
8 x 64 x P float32 Krylov basis: 2.2 GB for model (a)) runs ``--slq`` probes x steps. NTK: 32
examples, "trace" output, of all 10 logits for (a), of the target logit at the last query
position (the `ntk` probe's function) for (b). CKA and collapse take captured features (the
capture's forward pass is its own row): CKA between the blocks of the model and of a second
seed, per token for (b); collapse on the head's input over the classes present in the batch.

Part 2, probes on a run. One `Trainer.fit()` of the classifier (width ``--run-width``, default
MLP) on `digits`, batch 64 (or, with ``--run-model sequence``, of model (b)), ``--run-steps``
steps, without probes (first and last, to see drift) and with ``ProbeSpec(schedule="every",
every=--every)`` for each probe set of `PROBE_SETS`: the light probes (weights, spectra,
dynamics, collapse, similarity), + ntk, + the hessian probe at its defaults and on 64 examples
at tol 1e-4, 1e-3 and 1e-2, tracking (a budget of 2 products per call), and at ``stride`` 5
(every 5th probe step). The whole sequence runs ``--repeats`` times and each set keeps its
fastest fit. Wall time of ``fit()``; overhead = (with - without) / without against the issue's
target of 10%; each probe alone (one call at a later step on the trained model, with the run's
optimizer state) to show which dominates; whether the training loss curve (logged every step) is
bit-identical; and, for each hessian setting on 64 examples, its products per call and the gap
of its sharpness to tol 1e-4 at the same steps (the runs train identically, so their series
compare step by step: the cost of a cheaper setting in accuracy).

Timings on a loaded machine vary from run to run; the ratios measured within one run are what
to compare. This script asserts nothing about time.
"""
from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
import copy
import statistics
import time
import warnings
from dataclasses import replace
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerlab.errors import ConfigError
from layerlab.lens import collapse, dynamics, hessian, landscape, ntk, similarity, spectra
from layerlab.lens.probes import ProbeRunner, TargetLogit
from layerlab.models import build_model, count_parameters
from layerlab.spec import ModelSpec, OptimSpec, ProbeSpec, RunSpec, TaskSpec, TrainSpec
from layerlab.tasks import build_task
from layerlab.train import Trainer
from layerlab.train.optim import build_optimizer, lr_at

LIGHT = ("weights", "spectra", "dynamics", "collapse", "similarity")
FULL = LIGHT + ("ntk", "hessian")
NO_HESSIAN = LIGHT + ("ntk",)
FULL_ORDER = ("weights", "spectra", "hessian", "dynamics", "ntk", "collapse", "similarity")
CONVERGED_64 = {"hessian": {"n_examples": 64, "tol": 1e-4}}
# the hessian probe tracking the top eigenvector (2 products per warm call) on a training-size batch
TRACKING = {"hessian": {"budget": 2, "n_examples": 64}}
LABEL = 52  # width of the label column in both tables
# probe sets of part 2: label -> (probe names, probe options, probe stride)
PROBE_SETS: dict[str, tuple[tuple[str, ...], dict[str, dict[str, Any]], dict[str, int]]] = {
    "none": ((), {}, {}),
    "light: weights,spectra,dynamics,collapse,similarity": (LIGHT, {}, {}),
    "all but hessian: light + ntk": (NO_HESSIAN, {}, {}),
    "full: light + ntk,hessian (defaults: 256 ex., tol 1e-3)": (FULL, {}, {}),
    "full, hessian tol 1e-4, 64 ex.": (FULL, CONVERGED_64, {}),
    "full, hessian tol 1e-3, 64 ex.": (FULL, {"hessian": {"n_examples": 64}}, {}),
    "full, hessian tol 1e-2, 64 ex.": (FULL, {"hessian": {"n_examples": 64, "tol": 1e-2}}, {}),
    "full, hessian tracking (budget 2, 64 ex.)": (FULL, TRACKING, {}),
    "full, hessian tol 1e-3, 64 ex., stride 5": (FULL, {"hessian": {"n_examples": 64}}, {"hessian": 5}),
    "full, hessian tol 1e-2, 64 ex., stride 5": (FULL, {"hessian": {"n_examples": 64, "tol": 1e-2}},
                                                 {"hessian": 5}),
}
REFERENCE = "full, hessian tol 1e-4, 64 ex."  # the sharpness the cheaper settings are compared with


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Products:
    """Counts Hessian-vector products (``HessianOperator.matvec`` calls and ``matmat`` columns)."""

    def __init__(self) -> None:
        self.n = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        cls = hessian.HessianOperator
        original = cls.matmat, cls.matvec

        def matmat(op: hessian.HessianOperator, V: torch.Tensor) -> torch.Tensor:
            self.n += V.shape[1]
            return original[0](op, V)

        def matvec(op: hessian.HessianOperator, v: torch.Tensor) -> torch.Tensor:
            self.n += 1
            return original[1](op, v)

        cls.matmat, cls.matvec = matmat, matvec
        try:
            yield
        finally:
            cls.matmat, cls.matvec = original


def timed(fn: Callable[[], Any], device: torch.device, *, quick: float = 0.3,
          repeats: int = 5) -> tuple[float, int, list[str]]:
    """(median seconds of one call, HVPs per call, distinct warning messages)."""
    times, counter = [], Products()
    with warnings.catch_warnings(record=True) as caught, counter.counting():
        warnings.simplefilter("always")
        while True:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
            if times[0] >= quick or len(times) >= repeats:
                break
    notes = sorted({str(w.message).split(";")[0] for w in caught})
    return statistics.median(times), counter.n // len(times), notes


def step_seconds(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor], device: torch.device,
                 repeats: int = 10) -> float:
    """Median time of one training step (forward, backward, AdamW step) on a copy of `model`."""
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 2):
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(m).backward()
        opt.step()
        sync(device)
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- part 1: instruments ----------------------------------------------------------------------
def classifier_case(device: torch.device, width: int, expansion: float) -> dict[str, Any]:
    task = build_task("digits")
    spec = ModelSpec(backbone="classifier", d_model=width, n_layers=2, channel_options={"expansion": expansion})
    torch.manual_seed(0)
    model = build_model(spec, task).to(device)
    torch.manual_seed(1)
    other = build_model(spec, task).to(device)
    batch = task.train_batch(256, torch.Generator().manual_seed(0)).to(device)
    batch.inputs = batch.inputs.float()
    return dict(name=f"classifier d={width} x2 (hidden {round(expansion * width)}), digits, batch 256",
                task=task, model=model, other=other, batch=batch, blocks=["layers.0", "layers.1"],
                ntk_model=model, ntk_inputs=batch.inputs[:32], labels=batch.targets, positions=None)


def sequence_case(device: torch.device, length: int, batch_size: int) -> dict[str, Any]:
    task = build_task("mqar", length=length)
    spec = ModelSpec(backbone="sequence", mixer="attention", d_model=128, n_layers=4, mixer_options={"n_heads": 4})
    torch.manual_seed(0)
    model = build_model(spec, task).to(device)
    torch.manual_seed(1)
    other = build_model(spec, task).to(device)
    batch = task.train_batch(batch_size, torch.Generator().manual_seed(0)).to(device)
    # the last query position of each sequence and its target, as the ntk probe does
    idx = torch.arange(length, device=device).expand_as(batch.mask)
    last = torch.where(batch.mask, idx, -1).amax(dim=1)
    target = batch.targets.gather(1, last[:, None])[:, 0]
    f = TargetLogit(model, batch.inputs[:32], target[:32], last[:32])
    return dict(name=f"attention d=128 x4 (4 heads, MLP 512), mqar L={length}, batch {batch_size}",
                task=task, model=model, other=other, batch=batch, blocks=[f"blocks.{i}" for i in range(4)],
                ntk_model=f, ntk_inputs=f.indices(), labels=batch.targets[batch.mask], positions=batch.mask)


def tokens_or_rows(features: torch.Tensor, mask: torch.Tensor | None, scored_only: bool) -> torch.Tensor:
    """(B, d) rows as they are; (B, L, d) per token, at the scored positions only if asked."""
    if features.dim() == 2:
        return features
    return features[mask] if scored_only else features.reshape(-1, features.shape[-1])


def measure_instruments(case: dict[str, Any], device: torch.device, slq: tuple[int, int]) -> dict[str, tuple]:
    task, model, other, batch = case["task"], case["model"], case["other"], case["batch"]

    def loss_fn(m: nn.Module, b: Any) -> torch.Tensor:
        return task.loss(m(b.inputs), b)

    out: dict[str, tuple] = {}
    step = step_seconds(model, lambda m: loss_fn(m, batch), device)
    out["train step (fwd+bwd+AdamW)"] = (step, 0, [])
    v = torch.randn(count_parameters(model), generator=torch.Generator().manual_seed(0)).to(device)
    hessian.hvp(model, loss_fn, [batch], v)  # warm-up of torch.func
    ntk.empirical(case["ntk_model"], case["ntk_inputs"][:2], output="trace")
    ntk.empirical(case["ntk_model"], case["ntk_inputs"][:2], method="ntvp", output="trace")
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("hessian.hvp (1 product)", lambda: hessian.hvp(model, loss_fn, [batch], v)),
        ("spectra.layer_spectra", lambda: spectra.layer_spectra(model)),
        ("hessian.top_eigenvalues k=1", lambda: hessian.top_eigenvalues(model, loss_fn, [batch], 1, generator=gen())),
        ("hessian.top_eigenvalues k=5", lambda: hessian.top_eigenvalues(model, loss_fn, [batch], 5, generator=gen())),
        ("hessian.trace hutch++ n=60", lambda: hessian.trace(model, loss_fn, [batch], generator=gen())),
        (f"hessian.density SLQ {slq[0]}x{slq[1]}",
         lambda: hessian.density(model, loss_fn, [batch], n_probes=slq[0], lanczos_steps=slq[1], generator=gen())),
        ("ntk.empirical jacobian, 32 ex",
         lambda: ntk.empirical(case["ntk_model"], case["ntk_inputs"], method="jacobian", output="trace")),
        ("ntk.empirical ntvp, 32 ex",
         lambda: ntk.empirical(case["ntk_model"], case["ntk_inputs"], method="ntvp", output="trace")),
        ("ntk.empirical structured, 32 ex",
         lambda: ntk.empirical(case["ntk_model"], case["ntk_inputs"], method="structured", output="trace")),
        ("dynamics.capture (block outputs)",
         lambda: dynamics.capture(model, batch.inputs, case["blocks"])),
    ]
    for label, fn in rows:
        out[label] = timed(fn, device)
    feats = {k: tokens_or_rows(t, case["positions"], False) for k, t in
             dynamics.capture(model, batch.inputs, case["blocks"]).items()}
    feats_b = [tokens_or_rows(t, case["positions"], False) for t in
               dynamics.capture(other, batch.inputs, case["blocks"]).values()]
    first, last = feats[case["blocks"][0]], feats[case["blocks"][-1]]
    out["similarity.cka (first vs last block)"] = timed(lambda: similarity.cka(first, last), device)
    out["similarity.cka_matrix (blocks x seed 2)"] = timed(
        lambda: similarity.cka_matrix(list(feats.values()), feats_b), device)
    head_in = tokens_or_rows(dynamics.capture(model, batch.inputs, ["head"], kind="input")["head"],
                             case["positions"], True)
    labels = case["labels"]
    present, labels = torch.unique(labels, return_inverse=True)  # classes in the batch, renumbered
    W, b = model.head.weight[present], model.head.bias[present]
    out["collapse.metrics"] = timed(lambda: collapse.metrics(head_in, labels, W, b), device)
    out["landscape.barrier (21 points)"] = timed(lambda: landscape.barrier(model, other, loss_fn, [batch]), device)
    try:
        dynamics.attention_entropy(model, batch.inputs)
        out["dynamics.attention_entropy"] = timed(lambda: dynamics.attention_entropy(model, batch.inputs), device)
    except ConfigError:  # no attention layer
        pass
    out["dynamics.activation_patterns"] = timed(lambda: dynamics.activation_patterns(model, batch.inputs), device)
    return out


def print_instruments(cases: list[dict[str, Any]], results: list[dict[str, tuple]]) -> None:
    for i, case in enumerate(cases):
        print(f"({'ab'[i]}) {case['name']}: {count_parameters(case['model']):,} parameters")
    labels = list(dict.fromkeys(k for r in results for k in r))
    head = "".join(f" | {'(' + 'ab'[i] + ') s':>9} {'steps':>7} {'HVPs':>5}" for i in range(len(cases)))
    print(f"{'instrument':{LABEL}}{head}")
    notes = []
    for label in labels:
        line = f"{label:{LABEL}}"
        for i, r in enumerate(results):
            if label not in r:
                line += f" | {'n/a':>9} {'':>7} {'':>5}"
                continue
            s, hvps, msgs = r[label]
            step = r["train step (fwd+bwd+AdamW)"][0]
            line += f" | {s:9.3f} {s / step:7.1f} {hvps if hvps else '':>5}"
            notes += [f"({'ab'[i]}) {label}: {m}" for m in msgs]
        print(line)
    for n in notes:
        print(f"  warning {n}")


# ---- part 2: probes on a run --------------------------------------------------------------------
def run_spec(args: argparse.Namespace, names: tuple[str, ...],
             options: dict[str, dict[str, Any]] | None = None, stride: dict[str, int] | None = None) -> RunSpec:
    if args.run_model == "sequence":  # model (b) of part 1
        task = TaskSpec("mqar", {"length": args.seq_length})
        model = ModelSpec(backbone="sequence", mixer="attention", d_model=128, n_layers=4, mixer_options={"n_heads": 4})
        batch_size = args.seq_batch
    else:
        task = TaskSpec("digits")
        model = ModelSpec(backbone="classifier", d_model=args.run_width, n_layers=2)
        batch_size = 64
    return RunSpec(task=task, model=model, optim=OptimSpec(lr=1e-3, warmup_steps=50),
                   train=TrainSpec(steps=args.run_steps, batch_size=batch_size, eval_every=0, log_every=1),
                   probes=ProbeSpec(names=names, schedule="every", every=args.every, options=options or {},
                                    stride=stride or {}))


def fit(spec: RunSpec, task: Any, device: torch.device, warned: list[str] | None = None
        ) -> tuple[float, float, list[float], Trainer]:
    """(wall seconds of fit(), the Trainer's training time (probes and evaluation excluded),
    the training loss at every step, the trainer); warnings raised go to `warned`."""
    trainer = Trainer(spec, task=task, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sync(device)
        t0 = time.perf_counter()
        result = trainer.fit()
        sync(device)
        wall = time.perf_counter() - t0
    if warned is not None:
        warned += [str(w.message).split(";")[0] for w in caught]
    assert result.status == "done", result
    return wall, result.train_time_s, [v for _, v in trainer.recorder.series("train", "loss")], trainer


def probe_alone(spec: RunSpec, task: Any, model: nn.Module, device: torch.device) -> dict[str, tuple]:
    """Seconds of one call of each probe at a later step, on a copy of the trained `model` whose
    AdamW has taken a step (so the hessian probe also measures Adam's preconditioned sharpness)."""
    m = copy.deepcopy(model)
    opt = build_optimizer(m, spec.optim)
    batch = task.train_batch(spec.train.batch_size, torch.Generator().manual_seed(0)).to(device)
    task.loss(m(batch.inputs.float() if batch.inputs.is_floating_point() else batch.inputs), batch).backward()
    opt.step()
    lr = lr_at(spec.probes.every, spec.train.steps, spec.optim)
    out = {}
    variants = [(name, name, {}) for name in FULL_ORDER]
    variants[1:1] = [("hessian, 64 ex.", "hessian", CONVERGED_64), ("hessian tracking", "hessian", TRACKING)]
    for label, name, options in variants:
        runner = ProbeRunner((name,), options, task, batch_size=spec.probes.batch_size, device=device,
                             dtype=torch.float32)
        runner(0, m, lr=lr, optimizer=opt)  # step 0 keeps what later steps compare with
        out[label] = timed(lambda: runner(spec.probes.every, m, lr=lr, optimizer=opt), device, repeats=3)
    return out


def measure_run(args: argparse.Namespace, device: torch.device) -> None:
    base_spec = run_spec(args, ())
    task = build_task(base_spec.task.name, **base_spec.task.params)
    task.eval_set("val"), task.eval_set("test")  # built once, outside the timed runs
    n_calls = len(run_spec(args, ("weights",)).probes.steps(args.run_steps))
    what = (f"attention d=128 x4 (4 heads, MLP 512), mqar L={args.seq_length}, batch {args.seq_batch}"
            if args.run_model == "sequence" else
            f"classifier d={args.run_width} x2 (MLP {4 * args.run_width}), digits, batch 64")
    print(f"\nprobes on a run: {what}, {args.run_steps} steps, AdamW; probes every {args.every} steps = {n_calls} "
          f"calls on the first {base_spec.probes.batch_size} validation examples; wall time of Trainer.fit()")
    fit(replace(base_spec, train=replace(base_spec.train, steps=20)), task, device)  # warm-up
    sets = {label: v for label, v in PROBE_SETS.items()
            if label == "none" or not args.sets or any(label.startswith(word) for word in args.sets)}
    warned: dict[str, list[str]] = {label: [] for label in sets}
    runs: dict[str, tuple] = {}
    for _ in range(args.repeats):  # the whole sequence again; each set keeps its fastest fit
        for label, (names, opts, stride) in sets.items():
            run = fit(run_spec(args, names, opts, stride), task, device, warned[label])
            runs[label] = min(runs.get(label, run), run, key=lambda r: r[0])
        run = fit(base_spec, task, device)
        runs["none (again, last)"] = min(runs.get("none (again, last)", run), run, key=lambda r: r[0])
    trainer = runs["none"][3]
    base = (runs["none"][0] + runs["none (again, last)"][0]) / 2
    rest = sum(runs[k][0] - runs[k][1] for k in ("none", "none (again, last)")) / 2  # setup, final eval
    print("overhead: (fit - fit without probes) / fit without probes, the latter the mean of the first and "
          "last runs;\nin-run: probe time (fit - training time - the no-probe runs' setup and final "
          "evaluation) / the rest of the same fit")
    print(f"{'probes':{LABEL}} {'fit s':>7} {'train s':>8} {'overhead':>9} {'in-run':>7} {'<= 10%':>7} "
          f"{'loss curve vs none':>19}")
    for label, (wall, train, curve, _) in runs.items():
        if not PROBE_SETS.get(label, ((),))[0]:
            print(f"{label:{LABEL}} {wall:7.2f} {train:8.2f}")
            continue
        over = (wall - base) / base
        probes = wall - train - rest
        inrun = probes / (wall - probes)
        same = "bit-identical" if curve == runs["none"][2] and len(curve) == args.run_steps else "DIFFERENT"
        print(f"{label:{LABEL}} {wall:7.2f} {train:8.2f} {100 * over:8.0f}% {100 * inrun:6.0f}% "
              f"{'yes' if max(over, inrun) <= 0.10 else 'no':>7} {same:>19}")
    exact = dict(runs[REFERENCE][3].recorder.series("probe", "hessian/sharpness")) if REFERENCE in runs else {}
    hessian_sets = [label for label, (names, _, _) in sets.items() if "hessian" in names]
    if hessian_sets:
        print(f"hessian probe: Hessian-vector products per call (mean, first call, max later), and the relative "
              f"gap of the sharpness to '{REFERENCE}' (tol 1e-4) at the same steps of identical runs (median, max)")
    for label in hessian_sets:
        rec = runs[label][3].recorder
        products = [v for _, v in rec.series("probe", "hessian/products")]
        gaps = [abs(v - exact[step]) / abs(exact[step]) for step, v in rec.series("probe", "hessian/sharpness")
                if step in exact and step > 0]
        if "64" not in label:  # another batch of examples: another Hessian
            gaps = []
        print(f"  {label:{LABEL}} products {statistics.mean(products):5.1f} ({products[0]:.0f}, "
              f"{max(products[1:], default=0):.0f})" + (f"  gap {statistics.median(gaps):.1e}, {max(gaps):.1e}"
                                                         if gaps else ""))
    again = runs["none (again, last)"][2] == runs["none"][2]
    print(f"(the two no-probe runs' loss curves: {'bit-identical' if again else 'DIFFERENT'})")
    for label, msgs in warned.items():
        for msg, n in sorted(Counter(msgs).items()):
            print(f"  warning in run '{label}' ({n}x): {msg}")

    alone = probe_alone(base_spec, task, trainer.model, device)
    step = base / args.run_steps
    print(f"\neach probe alone (one call; x{n_calls} calls per run), against the no-probe run's {1000 * step:.1f} ms "
          f"per fit step")
    print(f"{'probe':18} {'s/call':>8} {'fit steps':>10} {'HVPs':>5} {'x calls / fit':>14}")
    for name, (s, hvps, msgs) in sorted(alone.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:18} {s:8.3f} {s / step:10.0f} {hvps if hvps else '':>5} {100 * s * n_calls / base:13.0f}%"
              + (f"  warning: {'; '.join(msgs)}" if msgs else ""))


# the second wave's instruments (issue 17), each timed by its own script
AREAS = ("spectra", "curvature", "kernels", "permutation", "instruments", "features", "certify")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=512, help="classifier width (a)")
    ap.add_argument("--expansion", type=float, default=1.0, help="MLP hidden width / width for classifier (a)")
    ap.add_argument("--seq-length", type=int, default=32, help="mqar sequence length for model (b)")
    ap.add_argument("--seq-batch", type=int, default=32)
    ap.add_argument("--slq", type=int, nargs=2, default=(4, 16), metavar=("PROBES", "STEPS"),
                    help="hessian.density probes and Lanczos steps (the function's default: 8 64)")
    ap.add_argument("--run-model", choices=("classifier", "sequence"), default="classifier",
                    help="part 2 trains the classifier (--run-width) or model (b) (--seq-length, --seq-batch)")
    ap.add_argument("--run-width", type=int, default=128, help="width of the classifier trained in part 2")
    ap.add_argument("--run-steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100, help="probe every this many steps")
    ap.add_argument("--repeats", type=int, default=2, help="fits of each probe set (the fastest counts)")
    ap.add_argument("--sets", nargs="*", default=[], metavar="WORD",
                    help="only the probe sets whose label starts with one of these words (and 'none')")
    ap.add_argument("--skip-instruments", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--areas", nargs="*", default=[], choices=AREAS, metavar="AREA",
                    help=f"then run benchmarks/lens_<area>.py with its defaults, for each of: {', '.join(AREAS)} "
                         "(the second wave's instruments; 'spectra' needs WeightWatcher in its own venv)")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"{device}, float32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    t0 = time.perf_counter()
    if not args.skip_instruments:
        cases = [classifier_case(device, args.width, args.expansion),
                 sequence_case(device, args.seq_length, args.seq_batch)]
        results = [measure_instruments(c, device, tuple(args.slq)) for c in cases]
        print_instruments(cases, results)
    if not args.skip_run:
        measure_run(args, device)
    for area in args.areas:
        print(f"\n=== benchmarks/lens_{area}.py ===", flush=True)
        script = Path(__file__).with_name(f"lens_{area}.py")
        argv, sys.argv = sys.argv, [str(script)]
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            sys.argv = argv
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
