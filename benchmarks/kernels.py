"""Chunked kernels against their token-by-token references: forward+backward time, one run.

    python benchmarks/kernels.py [--lengths 256 1024 4096] [--chunk 64]

B = 4, H = 4, head dim 64 (issue 4's setting). Prints each form's time and the ratio
recurrent / chunk, plus the chunk form's time per token (flat if its cost grows linearly in L).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from layerlab.kernels import delta_rule, linear_attention


def fwd_bwd_seconds(fn, tensors, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
        t0 = time.perf_counter()
        out, state = fn(*leaves)
        (out.sum() + state.sum()).backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    B, H, D = 4, 4, 64
    g = torch.Generator().manual_seed(0)
    print(f"B={B} H={H} D={D} chunk={args.chunk} float32, {torch.get_num_threads()} threads; best of {args.repeats}")
    print(f"{'kernel':18} {'L':>5} {'recurrent s':>12} {'chunk s':>9} {'ratio':>7} {'chunk us/token':>15}")
    for L in args.lengths:
        q = torch.randn(B, H, L, D, generator=g)
        k = F.normalize(torch.randn(B, H, L, D, generator=g), dim=-1)
        v = torch.randn(B, H, L, D, generator=g)
        beta = torch.rand(B, H, L, generator=g)
        cases = {
            "delta_rule": ([q, k, v, beta], lambda m: lambda *t: delta_rule(*t, mode=m, chunk_size=args.chunk)),
            "linear_attention": ([q, k, v], lambda m: lambda *t: linear_attention(*t, mode=m, chunk_size=args.chunk)),
        }
        for name, (tensors, make) in cases.items():
            rec = fwd_bwd_seconds(make("recurrent"), tensors, 1 if L >= 4096 else args.repeats)
            chk = fwd_bwd_seconds(make("chunk"), tensors, args.repeats)
            print(f"{name:18} {L:>5} {rec:>12.3f} {chk:>9.4f} {rec / chk:>7.1f} {1e6 * chk / (B * L):>15.2f}")


if __name__ == "__main__":
    main()
