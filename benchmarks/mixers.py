"""Sequence mixers: fast form against the token-by-token reference, forward+backward, one run.

    python benchmarks/mixers.py [--lengths 256 1024 4096] [--mixers deltanet mamba ...]
    python benchmarks/mixers.py --vs-attention [--mixers mamba s4d ...]
    python benchmarks/mixers.py --selective-scan

B = 4, d_model = 256 (4 heads of width 64 where a mixer has heads), float32. For each mixer
and length: the best of `repeats` forward+backward times of its default (fast) form and of its
"reference" form, their ratio, the fast form's time per token (flat when its cost grows
linearly in L), and the training memory of each form (bytes autograd saves for backward plus
parameters and gradients: `layerlab.train.footprint`). References slower than
`--max-reference-s` at one length are not run at longer lengths (their cost only grows).

`--vs-attention`: the `recall` suite's sizes (B 64, L 128, d_model 48, float32): a training step
(forward + backward) of each fast form of each mixer against attention's (4 heads), timed in
turns in one run; the median over `--repeats` rounds of each round's ratio (issue 16's target:
<= 3).

`--selective-scan`: Mamba's scan alone at those sizes (B 64, L 128, D = E d = 96, N 16), forward +
backward: the fused kernel at several checkpoint intervals (the backward's recompute vs store
trade: 1 keeps every state) against the pure-PyTorch chunked form; medians and ratios.
"""
from __future__ import annotations

import argparse
import statistics
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


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vs_attention(names: list[str], repeats: int, device: torch.device) -> None:
    B, L, d = 64, 128, 48
    print(f"training step (fwd+bwd) at B={B} L={L} d_model={d}, float32, {device}, {torch.get_num_threads()} "
          f"threads; {repeats} rounds, each times attention then every fast form of the mixer; medians of the "
          f"times and of the per-round ratios (robust to a machine whose load changes)")
    print(f"{'mixer':18} {'mode':>9} {'s':>9} {'attn s':>9} {'/ attention':>12}")
    x = torch.randn(B, L, d, device=device)
    torch.manual_seed(0)
    attention = layerlab.build("mixer", "attention", d, n_heads=4).to(device)
    for name in names:
        torch.manual_seed(0)
        block = build(name, d).to(device)
        modes = [m for m in block.modes if m != "reference"]
        for mode in modes:
            block(x[:, :8], mode=mode)  # builds a kernel on first use, outside the timing
        t_att, t_mode = [], {m: [] for m in modes}
        for _ in range(repeats):
            t_att.append(fwd_bwd_s(attention, x, attention.modes[0], 1))
            for mode in modes:
                t_mode[mode].append(fwd_bwd_s(block, x, mode, 1))
        for mode in modes:
            ratio = statistics.median(t / a for t, a in zip(t_mode[mode], t_att))
            print(f"{name:18} {mode:>9} {statistics.median(t_mode[mode]):>9.4f} {statistics.median(t_att):>9.4f} "
                  f"{ratio:>12.2f}", flush=True)


def selective_scan_bench(repeats: int) -> None:
    from layerlab.kernels.selective_scan import extension, selective_scan

    B, L, D, N = 64, 128, 96, 16
    g = torch.Generator().manual_seed(0)
    inputs = [torch.nn.functional.softplus(torch.randn(B, L, D, generator=g) - 3), -torch.rand(D, N, generator=g) * 16,
              torch.randn(B, L, N, generator=g), torch.randn(B, L, N, generator=g), torch.randn(B, L, D, generator=g)]
    t0 = time.perf_counter()
    built = extension() is not None
    print(f"selective scan B={B} L={L} D={D} N={N}, float32, {torch.get_num_threads()} threads; fused kernel "
          f"{'ready' if built else 'NOT AVAILABLE (chunk form runs)'} after {time.perf_counter() - t0:.1f} s "
          f"(a first build compiles; later runs load the cache); medians of {repeats} fwd+bwd")

    def step(**kw) -> None:
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        y, h = selective_scan(*leaves, **kw)
        (y.square().sum() + h.square().sum()).backward()

    forms = [("chunk", {"mode": "chunk"})] + [(f"fused, checkpoint {k}", {"checkpoint": k}) for k in (1, 8, 16, 32, L)]
    times = {label: [] for label, _ in forms}
    for _ in range(repeats):  # in turns, so a change in the machine's load hits every form alike
        for label, kw in forms:
            times[label].append(median_s(lambda: step(**kw), 1))
    t_chunk = statistics.median(times["chunk"])
    for label, ts in times.items():
        t = statistics.median(ts)
        print(f"{label:24} {t:>9.4f} s   chunk / this {t_chunk / t:>7.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--mixers", nargs="*", help="default: every registered mixer")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-reference-s", type=float, default=60.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vs-attention", action="store_true", help="training step vs attention at recall's sizes")
    ap.add_argument("--selective-scan", action="store_true", help="Mamba's scan alone: fused vs chunked")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.selective_scan:
        return selective_scan_bench(args.repeats)
    if args.vs_attention:
        recurrent = [n for n in layerlab.names("mixer") if layerlab.registry.get("mixer", n).obj.recurrent]
        return vs_attention(args.mixers or recurrent, args.repeats, device)
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
