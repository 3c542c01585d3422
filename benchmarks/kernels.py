"""Chunked and fused kernels against their token-by-token references: forward+backward time, one run.

    python benchmarks/kernels.py [--lengths 256 1024 4096] [--chunks 32 64] [--threads 2] [--repeats 5]
                                 [--head-dim 64]

B = 4, H = 4, head dim 64 (issue 4's setting; ``--head-dim``), float32. The rows "fused" time the
compiled recurrence of the delta-rule family (``mode="fused"``; linear attention has none). For each kernel (delta_rule,
gated_delta_rule, delta_product with n_h = 2, linear_attention) and length L, prints the best
time of each form over the repeats, the ratio recurrent / (chunk or fused), and that form's time per
token (flat in L if its cost grows linearly). The backward pass gets a fixed random dense
cotangent for the output and the final state, as in training (``out.sum()`` would hand the
kernels a stride-0 gradient that no training loss produces). Several ``--chunks`` values are
timed against the same recurrent measurement. ``delta_product``'s chunk size counts Householder
sub-steps, like the other kernels' (a chunk holds chunk / n_h tokens). Forms and kernels are
interleaved within each repeat, so a change in machine load hits them alike.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from layerlab.kernels import (
    delta_product,
    delta_rule,
    gated_delta_rule,
    linear_attention,
)


def fwd_bwd_seconds(kernel, form: tuple[str, int | None], tensors, cotangents) -> float:
    """Seconds of one forward + backward of ``kernel`` in ``form`` = (mode, chunk_size)."""
    mode, chunk = form
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    t0 = time.perf_counter()
    out, state = kernel(*leaves, mode=mode, chunk_size=chunk or 64)
    torch.autograd.backward([out, state], cotangents)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--chunks", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--kernels", nargs="+",
                    default=["delta_rule", "gated_delta_rule", "delta_product", "linear_attention"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, H, D, n_h = 4, 4, args.head_dim, 2
    g = torch.Generator().manual_seed(0)
    print(f"B={B} H={H} D={D} float32, {torch.get_num_threads()} threads; best of {args.repeats} "
          f"(recurrent at L >= 4096: best of {min(2, args.repeats)}); delta_product n_h={n_h}")
    print(f"{'kernel':18} {'L':>5} {'chunk':>5} {'recurrent s':>12} {'chunk s':>9} {'ratio':>7} {'chunk us/token':>15}")
    for L in args.lengths:
        q = torch.randn(B, H, L, D, generator=g)
        k = F.normalize(torch.randn(B, H, L, D, generator=g), dim=-1)
        v = torch.randn(B, H, L, D, generator=g)
        beta = torch.rand(B, H, L, generator=g) * 2.0
        log_decay = -0.1 * torch.rand(B, H, L, generator=g)
        kp = F.normalize(torch.randn(B, H, L, n_h, D, generator=g), dim=-1)
        vp = torch.randn(B, H, L, n_h, D, generator=g)
        bp = torch.rand(B, H, L, n_h, generator=g) * 2.0
        cot = [torch.randn(B, H, L, D, generator=g), torch.randn(B, H, D, D, generator=g)]
        cases = {
            "delta_rule": ([q, k, v, beta], delta_rule),
            "gated_delta_rule": ([q, k, v, beta, log_decay], gated_delta_rule),
            "delta_product": ([q, kp, vp, bp], delta_product),
            "linear_attention": ([q, k, v], linear_attention),
        }
        cases = {name: cases[name] for name in args.kernels}
        forms = [("recurrent", None), ("fused", None)] + [("chunk", c) for c in args.chunks]
        best = {(name, form): float("inf") for name in cases for form in forms}
        for name, (tensors, kernel) in cases.items():  # warm-up (allocator, first-call costs), untimed
            short = [t[:, :, :64] for t in tensors]
            for form in forms:
                if not (form[0] == "fused" and name == "linear_attention"):
                    fwd_bwd_seconds(kernel, form, short, [cot[0][:, :, :64], cot[1]])
        for r in range(args.repeats):
            for name, (tensors, kernel) in cases.items():
                for form in forms:
                    if form[0] == "fused" and name == "linear_attention":
                        continue
                    if form[0] == "recurrent" and L >= 4096 and r >= 2:
                        continue
                    seconds = fwd_bwd_seconds(kernel, form, tensors, cot)
                    best[name, form] = min(best[name, form], seconds)
        for name in cases:
            rec = best[name, ("recurrent", None)]
            for form in forms[1:]:
                chk = best[name, form]
                if chk == float("inf"):
                    continue
                print(f"{name:18} {L:>5} {form[1] or 'fused':>5} {rec:>12.3f} {chk:>9.4f} {rec / chk:>7.1f} "
                      f"{1e6 * chk / (B * L):>15.2f}", flush=True)


if __name__ == "__main__":
    main()
