"""Infinite-width kernels against the empirical NTK (issue 17 item 3), and the eigenframework.

    python benchmarks/lens_kernels.py [--inputs 32] [--width 1024] [--depth 3] [--repeats 5]
                                      [--threads 1]

Times (medians of ``--repeats`` after one warm-up call), float64 on the CPU:

- the layer recursion ``lens.theory.infinite_width.nngp_ntk`` for ``--inputs`` points in 16
  dimensions, ReLU and erf, depth ``--depth`` (and depth 10 for the cost per layer);
- the empirical NTK (``lens.ntk.empirical``, ``output="trace"``, methods ``jacobian``, ``ntvp``, ``structured``)
  of ``FullyConnected`` at width ``--width`` and the same depth on the same inputs, also in units
  of one full-batch training step of that network (forward, backward, SGD update), and its
  relative Frobenius distance to the recursion (the finite-width fluctuation, ~ width^-1/2);
- ``kernel_regression`` and ``gradient_descent_mse`` on the ``--inputs`` points (predictions on
  as many test points);
- ``eigenlearning.krr_risk`` on 10^4 and 10^6 power-law eigenvalues (one bisection for κ).

Timings on a loaded machine vary from run to run (with 2 threads on a machine loaded beyond its
cores the small recursion calls stall on the thread pool: 1 thread is the default); compare ratios
within one run. This script
asserts nothing about time.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

from layerlab.lens import ntk
from layerlab.lens.theory import eigenlearning
from layerlab.lens.theory.infinite_width import (FullyConnected, gradient_descent_mse, kernel_regression,
                                                 nngp_ntk)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    f64 = torch.float64
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.inputs, 16, generator=gen, dtype=f64)
    xs = torch.randn(args.inputs, 16, generator=gen, dtype=f64)
    y = torch.sin(x[:, 0])
    opts = dict(w_std=math.sqrt(2.0), b_std=0.1)
    print(f"{args.inputs} inputs in 16 dimensions, float64, {args.threads} threads, median of {args.repeats}")

    rows = []
    for act in ("relu", "erf"):
        for depth in (args.depth, 10):
            t = _median_time(lambda: nngp_ntk(x, depth=depth, activation=act, **opts), args.repeats)
            rows.append((f"recursion {act} depth {depth}", t, None))

    net = FullyConnected(16, args.width, args.depth, "relu", dtype=f64, **opts)
    params = list(net.parameters())

    def step() -> None:
        loss = 0.5 * (net(x).squeeze(-1) - y).square().mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(1e-12 * g)  # a step that leaves the kernel where it is

    t_step = _median_time(step, args.repeats)
    limit = nngp_ntk(x, depth=args.depth, activation="relu", **opts)[1]
    gap = None
    for method in ("jacobian", "ntvp", "structured"):
        t = _median_time(lambda: ntk.empirical(net, x, method=method, output="trace"), args.repeats)
        k = ntk.empirical(net, x, method=method, output="trace")
        gap = float((k - limit).norm() / limit.norm())
        rows.append((f"empirical NTK width {args.width} ({method})", t, t / t_step))
    rows.append((f"training step width {args.width}", t_step, 1.0))

    kxx = limit
    ksx = nngp_ntk(xs, x, depth=args.depth, activation="relu", **opts)[1]
    rows.append(("kernel_regression", _median_time(lambda: kernel_regression(ksx, kxx, y, 1e-6), args.repeats), None))
    rows.append(("gradient_descent_mse", _median_time(lambda: gradient_descent_mse(ksx, kxx, y, 100.0), args.repeats),
                 None))
    for m in (10 ** 4, 10 ** 6):
        lam = torch.arange(1, m + 1, dtype=f64) ** -1.5
        v = lam.sqrt()
        rows.append((f"krr_risk, {m:.0e} eigenvalues",
                     _median_time(lambda: eigenlearning.krr_risk(lam, v, 1000, 0.0, 0.1), args.repeats), None))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>10}  {'train steps':>11}")
    for name, t, steps in rows:
        print(f"{name:<{width}}  {t:>10.2e}  {'' if steps is None else f'{steps:>11.1f}'}")
    t_rec = next(t for n, t, _ in rows if n == f"recursion relu depth {args.depth}")
    t_emp = min(t for n, t, _ in rows if n.startswith("empirical"))
    print(f"recursion is {t_emp / t_rec:.0f}x faster than the fastest empirical NTK at width {args.width}; "
          f"their relative Frobenius distance: {gap:.3f}")


if __name__ == "__main__":
    main()
