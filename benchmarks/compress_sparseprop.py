"""SparseProp's sparse Linear against the dense masked Linear: forward+backward time vs sparsity, one run.

    python benchmarks/compress_sparseprop.py [--sizes 1024x1024 768x3072] [--batch 128]
                                              [--sparsities 0.5 0.8 0.9 0.95 0.98 0.99] [--repeats 21]
                                              [--threads 1] [--dtype float32]

For each layer size (in x out) and sparsity, a random support of that sparsity is drawn and three
layers with the same values are timed on one (batch, in) input: ``MaskedLinear`` (the reference:
dense weight times a mask at every forward, dense gradient then masked), ``SparseLinear`` (CSR
forward, CSR-transposed input gradient, sampled product for the weight gradient) and a plain dense
``nn.Linear`` (no mask). Time: median of ``repeats`` forward+backward passes after warm-up, the
three measured in turn within each repeat (so that drift in machine load hits all alike). The
ratio reported is masked / sparse (> 1: SparseProp is faster). ``--step`` adds one whole
fine-tuning step (forward, backward, Adam) of a pruned MLP ``in -> out -> out -> 10`` with both
hidden layers at the sparsity. Memory: the bytes of the stored tensors (values + int64 indices vs
the dense weight + bool mask), read from the modules.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from layerlab.blocks.sparse_linear import MaskedLinear, SparseLinear, masked_linears, sparseprop_linears


def stored_bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in m.state_dict().values())


def fwd_bwd_s(layer: nn.Module, x: torch.Tensor) -> float:
    layer.zero_grad(set_to_none=True)
    xi = x.detach().requires_grad_(True)
    t0 = time.perf_counter()
    layer(xi).square().mean().backward()
    return time.perf_counter() - t0


def step_s(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0


def medians(fns: list, repeats: int) -> list[float]:
    for _ in range(3):  # warm-up
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for t, f in zip(times, fns):
            t.append(f())
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1024x1024", "768x3072"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 0.98, 0.99])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--step", action="store_true", help="also time a whole fine-tuning step of a pruned MLP")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.dtype}, batch {args.batch}, "
          f"median of {args.repeats} forward+backward passes")
    print(f"{'in x out':>10} {'sparsity':>8} {'masked ms':>10} {'sparse ms':>10} {'dense ms':>9} "
          f"{'masked/sparse':>13} {'bytes sparse/masked':>19}")
    for size in args.sizes:
        n_in, n_out = map(int, size.split("x"))
        x = torch.randn(args.batch, n_in, generator=gen, dtype=dtype)
        for s in args.sparsities:
            torch.manual_seed(1)
            dense = nn.Linear(n_in, n_out, dtype=dtype)
            mask = torch.rand(n_out, n_in, generator=gen) >= s
            sp, ref = SparseLinear.from_dense(dense, mask), MaskedLinear.from_dense(dense, mask)
            t_ref, t_sp, t_dense = medians([lambda: fwd_bwd_s(ref, x), lambda: fwd_bwd_s(sp, x),
                                            lambda: fwd_bwd_s(dense, x)], args.repeats)
            print(f"{size:>10} {s:>8.2f} {1e3 * t_ref:>10.3f} {1e3 * t_sp:>10.3f} {1e3 * t_dense:>9.3f} "
                  f"{t_ref / t_sp:>13.2f} {stored_bytes(sp) / stored_bytes(ref):>19.3f}")
    if not args.step:
        return
    print("\nwhole fine-tuning step (forward, backward, Adam) of a pruned MLP in -> out -> out -> 10")
    print(f"{'in x out':>10} {'sparsity':>8} {'masked ms':>10} {'sparse ms':>10} {'masked/sparse':>13}")
    for size in args.sizes:
        n_in, n_out = map(int, size.split("x"))
        x = torch.randn(args.batch, n_in, generator=gen, dtype=dtype)
        y = torch.randint(0, 10, (args.batch,), generator=gen)
        for s in args.sparsities:
            torch.manual_seed(2)
            net = nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Linear(n_out, n_out), nn.ReLU(),
                                nn.Linear(n_out, 10)).to(dtype)
            with torch.no_grad():
                for i in (0, 2):
                    net[i].weight.mul_(torch.rand(net[i].weight.shape, generator=gen) >= s)
            fast, ref = sparseprop_linears(net, min_sparsity=s - 0.05), masked_linears(net, min_sparsity=s - 0.05)
            o_fast, o_ref = torch.optim.Adam(fast.parameters(), 1e-3), torch.optim.Adam(ref.parameters(), 1e-3)
            t_ref, t_sp = medians([lambda: step_s(ref, o_ref, x, y), lambda: step_s(fast, o_fast, x, y)], args.repeats)
            print(f"{size:>10} {s:>8.2f} {1e3 * t_ref:>10.3f} {1e3 * t_sp:>10.3f} {t_ref / t_sp:>13.2f}")


if __name__ == "__main__":
    main()
