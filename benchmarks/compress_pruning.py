"""Pruning techniques on a trained digits MLP: measured parameters, nonzeros and inference wall time,
as ratios against the dense model measured in the same run.

    python benchmarks/compress_pruning.py [--width 256] [--batch 1024] [--repeats 30] [--threads 1]

Techniques: magnitude_uniform, magnitude_global, layer_adaptive_dp (unstructured: zeros in dense
tensors) and lrp_pruning, taylor_pruning, unit_magnitude_pruning (structured: whole hidden units
removed, smaller Linear layers). The MLP 64 -> width -> width -> 10 is trained on digits (Adam,
600 steps); calibration / reference samples: 256 training digits. Time: the fastest of ``repeats``
forward passes on a (batch, 64) input (a shared machine adds noise, never speed), dense and pruned
measured alternately. Ratios are pruned / dense; test accuracy without fine-tuning beside them.
"""
from __future__ import annotations

import argparse
import time

import torch

from layerlab.claims.measures._digits_mlp import accuracy, digits_splits, train_mlp
from layerlab.compress import TECHNIQUES, CompressContext, apply_technique
from layerlab.tasks.base import Batch

TECHS = ("magnitude_uniform", "magnitude_global", "layer_adaptive_dp", "lrp_pruning", "taylor_pruning",
         "unit_magnitude_pruning")


def forward_ms(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        model(x)
    return 1e3 * (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = digits_splits()
    (x, y), (xt, yt) = data["train"], data["test"]
    net = train_mlp(x, y, 0, width=args.width, depth=2, steps=600, lr=1e-3, n_classes=10)
    ctx = CompressContext(task=None, calibration=Batch(x[:256], y[:256]), generator=torch.Generator().manual_seed(0),
                          loss_fn=lambda m, b: torch.nn.functional.cross_entropy(m(b.inputs), b.targets))
    xb = torch.rand(args.batch, 64, generator=torch.Generator().manual_seed(1))
    n_dense = sum(p.numel() for p in net.parameters())
    print(f"dense MLP 64-{args.width}-{args.width}-10: {n_dense} parameters, test accuracy {accuracy(net, xt, yt):.3f}")
    print(f"{'technique':24s} {'level':>5s} {'params':>7s} {'nonzero':>8s} {'time':>6s} {'test acc':>8s}")
    for name in TECHS:
        assert name in TECHNIQUES
        for level in args.levels:
            pruned = apply_technique(name, net, level, ctx)
            for m in (net, pruned):  # warm-up
                forward_ms(m, xb)
            dense_t, pruned_t = [], []
            for _ in range(args.repeats):
                dense_t.append(forward_ms(net, xb))
                pruned_t.append(forward_ms(pruned, xb))
            params = sum(p.numel() for p in pruned.parameters())
            nonzero = sum(int((p != 0).sum()) for p in pruned.parameters())
            print(f"{name:24s} {level:5.2f} {params / n_dense:7.3f} {nonzero / n_dense:8.3f} "
                  f"{min(pruned_t) / min(dense_t):6.2f} {accuracy(pruned, xt, yt):8.3f}")


if __name__ == "__main__":
    main()
