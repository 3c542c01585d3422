"""Channel mixers against an MLP of equal parameter count: forward+backward time and memory, one run.

    python benchmarks/channels.py [--widths 64 256] [--batch 256] [--repeats 20]

For each registered channel mixer at width d (default options), the reference is a GELU MLP
whose hidden width is chosen so that its parameter count equals the block's (within one hidden
unit). Time: median of `repeats` forward+backward passes on a (batch, d) input, after warm-up,
block and MLP measured alternately in the same run. Memory: bytes autograd saves for the
backward pass (activations; each storage once) plus parameters and gradients — the CPU
estimate of `layerlab.train.footprint`; on CUDA the measured peak. Ratios are block / MLP.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import layerlab
from layerlab.blocks.channels import MLP
from layerlab.train.footprint import train_step_memory


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def equal_mlp(d: int, target: int, device: torch.device) -> MLP:
    """The GELU MLP d -> h -> d with 2dh + h + d parameters closest to `target`."""
    h = max(1, round((target - d) / (2 * d + 1)))
    return MLP(d, hidden=h, device=device)


def fwd_bwd_ms(block: torch.nn.Module, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    block(x).square().mean().backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t0)


def compare(block: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    for _ in range(3):  # warm-up
        fwd_bwd_ms(block, x), fwd_bwd_ms(ref, x)
    a, b = [], []
    for _ in range(repeats):  # alternate so that drift in machine load hits both alike
        a.append(fwd_bwd_ms(block, x))
        b.append(fwd_bwd_ms(ref, x))
    return statistics.median(a), statistics.median(b)


def memory_mb(block: torch.nn.Module, x: torch.Tensor) -> float:
    return train_step_memory(block, lambda m: m(x).square().mean(), optimizer_slots=0) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--blocks", nargs="*", help="channel mixers to measure (default: all registered)")
    args = ap.parse_args()
    device = torch.device(args.device)
    names = args.blocks or layerlab.names("channel")
    print(f"batch {args.batch}, float32, {device}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} fwd+bwd; reference: GELU MLP of equal parameters")
    print(f"{'block':14} {'d':>4} {'params':>9} {'mlp h':>6} {'ms':>8} {'mlp ms':>8} {'time x':>7} "
          f"{'MB':>7} {'mlp MB':>7} {'mem x':>6}")
    for d in args.widths:
        torch.manual_seed(0)
        x = torch.randn(args.batch, d, device=device)
        for name in names:
            entry = layerlab.registry.get("channel", name)
            d_block = d - d % entry.width_multiple({}) if d % entry.width_multiple({}) else d
            block = layerlab.build("channel", name, d_block, device=device)
            xb = x[:, :d_block]
            ref = equal_mlp(d_block, n_params(block), device)
            t_block, t_ref = compare(block, ref, xb, args.repeats)
            m_block, m_ref = memory_mb(block, xb), memory_mb(ref, xb)
            print(f"{name:14} {d_block:>4} {n_params(block):>9,} {ref.hidden:>6} {t_block:>8.3f} {t_ref:>8.3f} "
                  f"{t_block / t_ref:>7.2f} {m_block:>7.2f} {m_ref:>7.2f} {m_block / m_ref:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
