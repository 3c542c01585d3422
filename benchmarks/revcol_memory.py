"""RevCol memory: bytes autograd stores for the backward, reversible vs plain, against the number of columns.

Run: ``.venv/bin/python benchmarks/revcol_memory.py [--batch 256 --d 64 --levels 3]``. Both forms share
the weights; "saved" counts the tensors kept for the backward (``saved_tensors_hooks``), the
activation memory that reversible columns remove; the time is one forward + backward (median of 5).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from layerlab.claims.measures.revcol import saved_bytes
from layerlab.models.revcol import RevCol


def step_time(model: RevCol, x: torch.Tensor, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x).sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--columns", type=int, nargs="+", default=[2, 4, 8, 16])
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 64)
    print(f"batch {args.batch}, d {args.d}, levels {args.levels}, float32, threads {torch.get_num_threads()}")
    print(f"{'columns':>7} {'plain MiB':>10} {'rev MiB':>9} {'rev/plain':>9} {'plain ms':>9} {'rev ms':>8} {'time x':>7}")
    for n in args.columns:
        rev = RevCol(64, args.d, 10, columns=n, levels=args.levels, reversible=True)
        plain = RevCol(64, args.d, 10, columns=n, levels=args.levels, reversible=False)
        plain.load_state_dict(rev.state_dict())
        sp, sr = saved_bytes(plain, x), saved_bytes(rev, x)
        tp, tr = step_time(plain, x), step_time(rev, x)
        print(f"{n:>7} {sp / 2**20:>10.2f} {sr / 2**20:>9.3f} {sr / sp:>9.3f} {tp * 1e3:>9.1f} {tr * 1e3:>8.1f} {tr / tp:>7.2f}")


if __name__ == "__main__":
    main()
