"""RTN quantization and Hessian mixed precision on a digits MLP: test accuracy against the bits, time and
memory measured by compress.savings against the float model in the same run.

    python benchmarks/compress_quantize.py [--seeds 0 1 2] [--levels 8 6 4 3 2] [--width 64] [--depth 3]

For each seed an MLP (64 -> width x depth -> 10) is trained by AdamW (1500 steps, the setting of the
card hessian-mixed-precision-vs-uniform-digits); each level is applied by ``rtn`` and, for levels
with a smaller bit choice, ``hessian_mixed_precision`` (exact blocks + consecutive cross terms,
widths in {2, 3, 4, 5, 6, 8}). Printed per technique and level, means over the seeds: test accuracy,
the average bits per weight read from the modules, the stored-bits ratio, the forward wall-time
ratio and the memory ratio (``compress.savings.measure_savings`` on the 270 test images, one thread,
interleaved with the float model). Quantization is simulated (codes dequantized at each forward),
so the time ratio measures the dequantization overhead, not an integer kernel.
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from layerlab.claims.measures._digits_mlp import digits_splits
from layerlab.claims.measures._quantize_digits import evaluate, train_digits
from layerlab.compress import CompressContext
from layerlab.compress.mixed_precision import hessian_mixed_precision
from layerlab.compress.quantize import rtn
from layerlab.compress.savings import measure_savings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--levels", type=int, nargs="+", default=[8, 6, 4, 3, 2])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = digits_splits()
    (x, y), (xt, yt) = d["train"], d["test"]
    rows: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    floats = []
    for seed in args.seeds:
        net = train_digits(x, y, seed, optimizer="adamw", lr=3e-3, width=args.width, depth=args.depth, steps=1500)
        floats.append(evaluate(net, xt, yt)[1])
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=gen)[:256]
        ctx = CompressContext(None, (x[idx], y[idx]), gen, lambda m, b: F.cross_entropy(m(b[0]), b[1]))
        for level in args.levels:
            made = {"rtn": rtn(net, level)}
            if level > 2:
                made["hessian_mixed_precision"] = hessian_mixed_precision(net, level, ctx)
            for name, model in made.items():
                s = measure_savings(net, model, xt).as_dict()
                mods = [m for m in model.modules() if hasattr(m, "bits_per_weight")]
                avg = sum(m.codes.numel() * m.bits_per_weight for m in mods) / sum(m.codes.numel() for m in mods)
                rows.setdefault((name, level), []).append(
                    (evaluate(model, xt, yt)[1], avg, s["bits_ratio"], s["time_ratio"], s["memory_ratio"]))
    print(f"float accuracy {statistics.mean(floats):.4f} (seeds {args.seeds}, width {args.width}, depth {args.depth})")
    print(f"{'technique':26s} {'level':>5s} {'accuracy':>9s} {'avg bits':>9s} {'bits ratio':>11s} "
          f"{'time ratio':>11s} {'memory ratio':>13s}")
    for (name, level), vals in rows.items():
        m = [statistics.mean(v[i] for v in vals) for i in range(5)]
        print(f"{name:26s} {level:5d} {m[0]:9.4f} {m[1]:9.3f} {m[2]:11.4f} {m[3]:11.2f} {m[4]:13.3f}")


if __name__ == "__main__":
    main()
