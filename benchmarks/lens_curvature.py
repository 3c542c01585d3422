"""Curvature operators of `layerlab.lens.curvature` (issue 17 item 2): the time of one product with
the Hessian ``H``, its Gauss–Newton part ``G`` and its residual ``R``, one and 20 columns at a
time, and of the instruments built on them (the Hessian diagonal by Hutchinson, Lanczos and
Hutch++ on ``G``), in seconds, in Hessian-vector products (HVPs, one ``H`` column) and in
training steps of the model observed.

    python benchmarks/lens_curvature.py [--device cpu] [--width 512] [--seq-length 32] [--threads 0]

Models, as benchmarks/lens.py: (a) layerlab's classifier backbone, 2 residual MLP layers of width
``--width`` (hidden = width) on `digits`, batch 256; (b) a 4-layer width-128 attention sequence
model (4 heads) on `mqar`, batch 32, cross-entropy over the masked query positions (a layerlab
``Batch`` with a mask: the split's rows are the scored positions). One training step = forward,
backward and AdamW step on the same batch (median of 10). Each call is repeated (median) when it
takes under 0.3 s, after one warm-up call. ``H`` products use `HessianOperator`'s automatic form
(double backward for one column, forward-over-reverse under vmap for a block); ``G`` products one
forward pass with its vector-Jacobian product plus a forward-mode Jacobian-vector product;
``R`` is a `HessianOperator` of the loss ``r̄ᵀf`` and costs what ``H`` costs.

Timings on a loaded machine vary from run to run; compare the ratios within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerlab.lens import curvature, hessian
from layerlab.models import build_model
from layerlab.spec import ModelSpec
from layerlab.tasks import build_task


def timed(fn: Callable[[], Any], *, quick: float = 0.3, repeats: int = 5) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first >= quick:
        return first
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_seconds(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor], repeats: int = 10) -> float:
    m = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(m).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cases(device: torch.device, width: int, length: int) -> list[dict[str, Any]]:
    out = []
    task = build_task("digits")
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="classifier", d_model=width, n_layers=2,
                                  channel_options={"expansion": 1}), task).to(device)
    batch = task.train_batch(256, torch.Generator().manual_seed(0)).to(device)
    batch.inputs = batch.inputs.float()
    out.append(dict(name=f"classifier d={width} x2, digits, batch 256", task=task, model=model, batch=batch))
    task = build_task("mqar", length=length)
    torch.manual_seed(0)
    model = build_model(ModelSpec(backbone="sequence", mixer="attention", d_model=128, n_layers=4,
                                  mixer_options={"n_heads": 4}), task).to(device)
    batch = task.train_batch(32, torch.Generator().manual_seed(0)).to(device)
    out.append(dict(name=f"attention d=128 x4, mqar L={length}, batch 32", task=task, model=model, batch=batch))
    return out


def measure(case: dict[str, Any]) -> list[tuple[str, float, float]]:
    task, model, batch = case["task"], case["model"], case["batch"]

    def loss_fn(m: nn.Module, b: Any) -> torch.Tensor:
        return task.loss(m(b.inputs), b)

    step = step_seconds(model, lambda m: loss_fn(m, batch))
    H, G, R = curvature.gauss_newton_split(model, [batch], loss="cross_entropy")
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    v = torch.randn(H.dim, generator=gen()).to(H.device)
    V = torch.randn(H.dim, 20, generator=gen()).to(H.device)
    h1 = timed(lambda: H.matvec(v))
    rows = [("H v (1 column)", h1, 1.0)]
    for name, fn, hvps in (
        ("G v (1 column)", lambda: G.matvec(v), None),
        ("R v (1 column)", lambda: R.matvec(v), None),
        ("H V (20 columns)", lambda: H.matmat(V), None),
        ("G V (20 columns)", lambda: G.matmat(V), None),
        ("R V (20 columns)", lambda: R.matmat(V), None),
        ("hessian_diagonal n=100, block 32", lambda: curvature.diagonal(H, n_samples=100, generator=gen()), None),
        ("G top eigenvalue (Lanczos, tol 1e-3)",
         lambda: G.top_eigenpairs(1, tol=1e-3, generator=gen()), None),
        ("G trace (Hutch++ n=60)", lambda: G.trace(n_samples=60, generator=gen()), None),
    ):
        rows.append((name, timed(fn), hvps))
    return [(name, sec, sec / h1, sec / step) for name, sec, _ in rows] + [("training step", step, step / h1, 1.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seq-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for case in cases(device, args.width, args.seq_length):
        n_params = sum(p.numel() for p in case["model"].parameters())
        print(f"\n{case['name']}  ({n_params:,} parameters)")
        print(f"  {'call':42s} {'seconds':>10s} {'in HVPs':>9s} {'in steps':>9s}")
        for name, sec, hvps, steps in measure(case):
            print(f"  {name:42s} {sec:10.4f} {hvps:9.2f} {steps:9.2f}")


if __name__ == "__main__":
    main()
