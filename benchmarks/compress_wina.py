"""WINA and TEAL on the digits MLP: quality against the measured saving, one run.

    python benchmarks/compress_wina.py [--seed 0] [--sparsities 0.25 0.35 0.45 0.55 0.65] [--repeats 15]

Trains the SiLU MLP 64-128-128-10 of the WINA cards (``claims.measures.wina.train``: Adam 1e-3,
batch 64, 1,500 steps), then for each sparsity and rule (WINA, WINA with the orthogonalising
transform, TEAL) reports on the test split: accuracy, the mean layer output error (each layer on
its dense-network input), the input density each wrapped layer saw (kept inputs / inputs, counted
in forward, weighted by the weight columns an input stands for: the fraction of weight columns a
sparse kernel would read), and from ``compress.savings.measure_savings`` against the dense model
in the same call: the stored parameters ratio and the inference wall-time ratio (one thread,
interleaved). The wrappers multiply the masked input by the dense weight, so no time is saved
here: the density is the saving a gather/GEMV kernel (TEAL's, WINA's) would turn into time.
"""
from __future__ import annotations

import argparse

import torch

from layerlab.claims.measures._digits_mlp import accuracy, digits_splits
from layerlab.claims.measures.wina import RULES, layer_inputs, train
from layerlab.compress.savings import measure_savings
from layerlab.compress.wina import measured_density, sparsify_inputs, wrapped_layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.25, 0.35, 0.45, 0.55, 0.65])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = digits_splits()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    net = train(xtr, ytr, args.seed, width=128, depth=2, steps=1500, lr=1e-3, activation="silu")
    inputs = layer_inputs(net, xte)
    print(f"digits SiLU MLP 64-128-128-10, seed {args.seed}: dense test accuracy {accuracy(net, xte, yte):.4f}")
    print(f"{'s':>5} {'rule':>6} {'acc':>7} {'layer err':>9} {'density':>8} {'params/dense':>12} {'time/dense':>10}")
    for s in args.sparsities:
        for label, rule, transform in RULES:
            model = sparsify_inputs(net, s, rule, transform=transform)
            with torch.no_grad():
                errs = [float((m(inputs[n]) - m.linear(inputs[n])).norm() / m.linear(inputs[n]).norm())
                        for n, m in wrapped_layers(model).items()]
                for m in wrapped_layers(model).values():
                    m.reset_counts()
                acc = accuracy(model, xte, yte)
                density = measured_density(model)
            sav = measure_savings(net, model, xte, repeats=args.repeats).as_dict()
            print(f"{s:>5.2f} {label:>6} {acc:>7.4f} {sum(errs) / len(errs):>9.4f} {density:>8.3f} "
                  f"{sav['params'] / sav['dense_params']:>12.3f} {sav['time_ratio']:>10.2f}")


if __name__ == "__main__":
    main()
