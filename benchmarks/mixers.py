"""Sequence mixers: fast form against the token-by-token reference, forward+backward, one run.

    python benchmarks/mixers.py [--lengths 256 1024 4096] [--mixers deltanet mamba ...]

B = 4, d_model = 256 (4 heads of width 64 where a mixer has heads), float32. For each mixer
and length: the best of `repeats` forward+backward times of its default (fast) form and of its
"reference" form, their ratio, the fast form's time per token (flat when its cost grows
linearly in L), and the training memory of each form (bytes autograd saves for backward plus
parameters and gradients: `layerlab.train.footprint`). References slower than
`--max-reference-s` at one length are not run at longer lengths (their cost only grows).
"""
from __future__ import annotations

import argparse
import time

import torch

import layerlab
from layerlab.train.footprint import train_step_memory

HEADS = {"n_heads": 4}


def build(name: str, d: int) -> torch.nn.Module:
    options = layerlab.registry.get("mixer", name).options
    return layerlab.build("mixer", name, d, **{k: v for k, v in HEADS.items() if k in options})


def fwd_bwd_s(block: torch.nn.Module, x: torch.Tensor, mode: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        xi = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        block(xi, mode=mode).square().mean().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def memory_mb(block: torch.nn.Module, x: torch.Tensor, mode: str) -> float:
    return train_step_memory(block, lambda m: m(x, mode=mode).square().mean(), optimizer_slots=0) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--mixers", nargs="*", help="default: every registered mixer")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-reference-s", type=float, default=60.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    names = args.mixers or layerlab.names("mixer")
    print(f"B={args.batch} d_model={args.d_model} (4 heads where a mixer has heads), float32, {device}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats} fwd+bwd")
    print(f"{'mixer':18} {'L':>5} {'fast':>8} {'fast s':>9} {'ref s':>9} {'ref/fast':>9} {'fast us/tok':>12} "
          f"{'fast MB':>9} {'ref MB':>9}")
    for name in names:
        torch.manual_seed(0)
        block = build(name, args.d_model).to(device)
        fast = block.modes[0]
        ref_too_slow = fast == "reference"
        for L in args.lengths:
            x = torch.randn(args.batch, L, args.d_model, device=device)
            t_fast = fwd_bwd_s(block, x, fast, args.repeats)
            m_fast = memory_mb(block, x, fast)
            if ref_too_slow:
                t_ref, m_ref = float("nan"), float("nan")
            else:
                t_ref = fwd_bwd_s(block, x, "reference", 1)
                m_ref = memory_mb(block, x, "reference")
                ref_too_slow = t_ref > args.max_reference_s
            print(f"{name:18} {L:>5} {fast:>8} {t_fast:>9.4f} {t_ref:>9.3f} {t_ref / t_fast:>9.1f} "
                  f"{1e6 * t_fast / (args.batch * L):>12.2f} {m_fast:>9.1f} {m_ref:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
