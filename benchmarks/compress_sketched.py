"""Sketched backpropagation (arXiv:2201.13195) against nn.Linear: memory kept for backward and step time.

    python benchmarks/compress_sketched.py [--rows 2048] [--width 512] [--ratios 0.5 0.25 0.1] [--repeats 9]

Three settings, each measured against the exact nn.Linear version in the same run:

1. one Linear ``width -> width`` on ``rows`` input rows (batch x tokens), input requiring grad;
2. a Transformer feed-forward block on ``(rows / 64, 64, width)`` tokens: LayerNorm -> Linear(width,
   4 width) -> GELU -> Linear(4 width, width), and the same block with ReLU (whose backward keeps its
   output: the second Linear's input stays in memory whatever the Linear saves);
3. one training step of the digits GELU MLP 64-256-256-10 on a batch of 64 (the card's model).

Memory: bytes autograd saves for the backward pass, each storage once, parameters excluded
(``layerlab.train.footprint.saved_activation_bytes``); on CUDA also the measured peak of the step.
The losses of settings 1 and 2 are plain sums (which keep nothing for backward), so the bytes are the
block's own. Time: median of ``repeats`` forward+backward passes after warm-up, sketched and exact
alternated so that drift in the machine's load hits both alike. Ratios are sketched / exact.
A dense Gaussian or Rademacher sketch costs ``rho B^2 N`` multiply-adds to form ``S^T X`` (and again
``rho B^2 M`` for ``S^T G``): quadratic in the rows, so on the CPU the step is slower, not faster.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from layerlab.blocks.sketched_linear import sketch_linears
from layerlab.train.footprint import saved_activation_bytes


def saved_bytes(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> int:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    out, n = saved_activation_bytes(lambda: loss(model), exclude=params)
    out.backward()
    model.zero_grad(set_to_none=True)
    return n


def step_ms(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss(model).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return 1e3 * (time.perf_counter() - t0)


def peak_bytes(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    loss(model).backward()
    torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(device) - base


def compare(name: str, exact: nn.Module, loss: Callable[[nn.Module], torch.Tensor], ratios: list[float],
            sketch: str, repeats: int, device: torch.device) -> None:
    exact.train()
    ref_bytes = saved_bytes(exact, loss)
    ref_peak = peak_bytes(exact, loss, device)
    for ratio in ratios:
        sk = sketch_linears(exact, sketch_ratio=ratio, sketch=sketch).train()
        sk_bytes = saved_bytes(sk, loss)
        for _ in range(3):  # warm-up
            step_ms(sk, loss, device), step_ms(exact, loss, device)
        a, b = [], []
        for _ in range(repeats):
            a.append(step_ms(sk, loss, device))
            b.append(step_ms(exact, loss, device))
        ta, tb = statistics.median(a), statistics.median(b)
        peak = peak_bytes(sk, loss, device)
        peak_txt = f"  peak {peak / ref_peak:5.3f}" if peak is not None and ref_peak else ""
        print(f"{name:<34} rho {ratio:<5g} saved {sk_bytes / 2**20:8.2f} / {ref_bytes / 2**20:8.2f} MiB = "
              f"{sk_bytes / ref_bytes:5.3f}   step {ta:7.2f} / {tb:7.2f} ms = {ta / tb:5.2f}x{peak_txt}", flush=True)


def ffn(width: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), act, nn.Linear(4 * width, width))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    ap.add_argument("--sketch", default="gaussian", choices=["gaussian", "rademacher"])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    w, rows = args.width, args.rows
    print(f"device {device}, threads {torch.get_num_threads()}, sketch {args.sketch}, torch {torch.__version__}")

    x = torch.randn(rows, w, device=device, requires_grad=True)
    compare(f"Linear {w}->{w}, {rows} rows", nn.Linear(w, w, device=device),
            lambda m: m(x).sum(), args.ratios, args.sketch, args.repeats, device)

    tokens = torch.randn(max(1, rows // 64), 64, w, device=device, requires_grad=True)
    for label, act in (("GELU", nn.GELU()), ("ReLU", nn.ReLU())):
        compare(f"FFN LN-{label}, {tokens.shape[0]}x64 tokens", ffn(w, act).to(device),
                lambda m: m(tokens).sum(), args.ratios, args.sketch, args.repeats, device)

    xd = torch.rand(64, 64, device=device)
    yd = torch.randint(0, 10, (64,), device=device)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 10)).to(device)
    compare("digits GELU MLP, batch 64", mlp, lambda m: nn.functional.cross_entropy(m(xd), yd),
            args.ratios, args.sketch, args.repeats, device)


if __name__ == "__main__":
    main()
